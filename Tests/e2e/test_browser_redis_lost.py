"""The PC page in real Chromium starts a new session at once when Redis loses its session.

One `redis-server` and one Tandem node on it (`BROKER=redis`). The PC page makes its session and opens its stream;
then Redis is emptied (FLUSHALL) and the node's connections to it are killed, as a Redis restarted without
persistence leaves things. The node reconnects, finds the session gone, and ends the stream with an `expired`
event; the page must show a new session (a new id in the phone URL, status waiting) within a few seconds, although
its session is young (a stream refused right after a session was made is otherwise retried only after 5 s), and
long before the ten minutes of the old session's countdown.

Needs: Debian `chromium`, `chromium-driver`, `redis-server`; `pip install -r Tests/e2e/requirements.txt`; a built
binary at $TANDEM_BINARY or .build/debug/tandem. Screenshots go to test-artifacts/browser/redis-lost-*.png. Every
wait is bounded, and every process the test starts is stopped by its PID when it ends, passed or failed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tandem_browser import JA, Pages, chrome_options, qr_loaded, quit_quietly, start_chrome
from tandem_e2e.nodes import Cluster

# From Redis losing the session to the page showing a new one: the node's reconnect (~100 ms) and one new
# session. Without the page's handler it would take the 2 s retry, a 404, and the 5 s pause of a young session.
RENEW_WAIT = 3.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as running:
        yield running


@pytest.fixture
def pc() -> Iterator[WebDriver]:
    driver = start_chrome(chrome_options("ja"))
    try:
        yield driver
    finally:
        quit_quietly(driver)


pages = Pages("redis-lost-")


def page_session_id(driver: WebDriver) -> str:
    url = driver.find_element(By.ID, "phone-url").get_attribute("textContent") or ""
    match = re.search(r"[?&]session=([A-Za-z0-9_-]+)(?:&|$)", url)
    return match.group(1) if match else ""


def test_the_pc_page_starts_a_new_session_at_once_when_redis_lost_its_session(cluster: Cluster, pc: WebDriver) -> None:
    redis = cluster.redis()
    node = cluster.tandem("A", {"BROKER": "redis", "REDIS_URL": redis.url, "HEARTBEAT_SECONDS": "2"})

    pc.get(node.base_url + "/")
    pages.wait_status(pc, "waiting", JA["waiting"])
    pages.wait_until(pc, qr_loaded, "the QR image")
    first = page_session_id(pc)
    assert first, "no session id in the phone URL"
    channel = f"tandem:{{{first}}}:events"
    pages.wait_until(pc, lambda _: redis.command("PUBSUB", "NUMSUB", channel)[1] == 1, "the node to subscribe to the stream")
    pages.shot(pc, "first-session")

    assert redis.command("FLUSHALL") == "OK"
    redis.command("CLIENT", "KILL", "TYPE", "normal")
    lost_at = time.monotonic()

    def renewed(driver: WebDriver) -> bool:
        current = page_session_id(driver)
        return current not in ("", first) and driver.find_element(By.ID, "status").get_attribute("data-state") == "waiting"

    pages.wait_until(pc, renewed, f"a new session within {RENEW_WAIT} s of Redis losing the first\n{node.log()}", RENEW_WAIT)
    took = time.monotonic() - lost_at
    second = page_session_id(pc)
    pages.shot(pc, "new-session")
    assert redis.command("EXISTS", f"tandem:{{{second}}}:session") == 1, "the new session is not in Redis"
    print(f"\n[redis-lost] new session shown {took:.2f} s after Redis lost the first")
