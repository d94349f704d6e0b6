"""The operators' page (/ops) on two nodes sharing one Redis, in headless Chromium.

- Both nodes report themselves through Redis: the page, opened on node A, lists node A and node B.
- Flows run over HTTP on both nodes (a PC stream on one, the phone's calls on the other) and the page's counts move:
  pairings by state, streams.
- The API refuses without the token (401 on both nodes) and every payload the page shows or the API sends, and the
  page's own text, hold none of the submitted names and phone numbers nor any session ID.
- axe-core audits the page (serious and critical findings fail), as test_accessibility.py does for the others.

Run: TANDEM_BINARY=$PWD/.build/debug/tandem .build/test-venv/bin/python -m pytest -q Tests/e2e/test_ops.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import test_accessibility as a11y
from tandem_browser import Pages, browsers  # noqa: F401 (browsers: a fixture)
from tandem_e2e.nodes import Cluster, Node
from tandem_e2e.phone import expect_input_started, expect_submitted, expect_valid, new_session_id
from tandem_e2e.sse import Stream

TOKEN = "e2e-ops-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 20.0

pages = Pages(prefix="ops-")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with Cluster(tmp_path) as cluster:
        redis = cluster.redis()

        def node(name: str) -> Node:
            return cluster.tandem(name, lambda port: {
                "BROKER": "redis", "REDIS_URL": redis.url, "OPS_TOKEN": TOKEN, "OPS_NODE_NAME": f"node-{name.lower()}",
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            })

        yield node("A"), node("B")


def snapshot(node: Node) -> tuple[dict[str, Any], str]:
    with node.client() as client:
        response = client.get("/api/ops/snapshot", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json(), response.text


def ops_events(node: Node, count: int) -> list[str]:
    """The `data` of the first `count` events of /api/ops/events."""
    found: list[str] = []
    with httpx.Client(base_url=node.base_url, timeout=10.0) as client:
        with client.stream("GET", "/api/ops/events", headers={**AUTH, "Accept": "text/event-stream"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            for line in response.iter_lines():
                if line.startswith("data:"):
                    found.append(line[5:].strip())
                    if len(found) >= count:
                        break
    return found


# The page redraws its tables as reports arrive, so each is read in one script run: cells found one call and read the
# next can be gone by then (StaleElementReferenceException).
def pairings_on_page(driver: WebDriver) -> dict[str, str]:
    cells = driver.execute_script(
        "return [...document.querySelectorAll('#pairings td')].map(c => [c.getAttribute('data-key'), c.innerText.trim()])")
    return {key: text for key, text in cells}


def node_rows(driver: WebDriver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#nodes tr')].map(r => [...r.querySelectorAll('th, td')].map(c => c.innerText.trim()))")


def test_counts_move_as_flows_run_on_two_nodes_and_no_user_data_shows(nodes: tuple[Node, Node], browsers: Any) -> None:  # noqa: F811
    a, b = nodes
    for node in (a, b):
        with node.client() as client:
            assert client.get("/api/ops/snapshot").status_code == 401
            assert client.get("/api/ops/events", headers={"Authorization": "Bearer not-the-token-at-all"}).status_code == 401

    driver = browsers("pc", "en")
    driver.get(a.base_url + "/ops")
    pages.wait_until(driver, lambda d: d.find_element(By.ID, "token").is_displayed(), "the token form")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    pages.wait_until(
        driver, lambda d: sorted(row[0] for row in node_rows(d)) == ["node-a", "node-b"], "both nodes on the page", WAIT)
    before = pairings_on_page(driver)
    assert before == {"waiting": "0", "connected": "0", "inputting": "0", "completed": "0", "cancelled": "0"}, before
    note = driver.find_element(By.ID, "pairings-note").text
    assert note == "Completed and cancelled: those within the session TTL (10 min).", note
    uptimes = [row[2] for row in node_rows(driver)]
    assert all(re.fullmatch(r"(\d+ h )?\d+ min \d+ s", uptime) for uptime in uptimes), uptimes
    assert driver.find_element(By.ID, "sign-in").is_enabled()
    pages.shot(driver, "empty")

    secrets_: list[str] = []
    streams: list[Stream] = []
    try:
        # Completed: PC on A, phone on B. Connected: PC on B, phone on A. Waiting: PC on A.
        completed, connected, waiting = new_session_id(), new_session_id(), new_session_id()
        for pc_node, session_id in ((a, completed), (b, connected), (a, waiting)):
            stream = Stream(pc_node, session_id).start()
            streams.append(stream)
            stream.wait_opened()
        name, phone = "運用試験花子", "080-4242-1717"
        expect_valid(b, completed)
        expect_input_started(b, completed)
        expect_submitted(b, completed, name=name, phone=phone)
        expect_valid(a, connected)
        secrets_ = [name, phone, "4242", completed, connected, waiting]

        expected = {"waiting": "1", "connected": "1", "inputting": "0", "completed": "1", "cancelled": "0"}
        pages.wait_until(driver, lambda d: pairings_on_page(d) == expected, f"the page's counts {expected}", WAIT)
        pages.wait_until(driver, lambda d: len(d.find_element(By.ID, "oldest").text.split(",")) == 1, "one waiting age", WAIT)
        rows = {row[0]: row for row in node_rows(driver)}
        # Columns: name, version, uptime, PC streams, phone streams, sessions, events/s, p99, report age.
        assert rows["node-a"][3] == "2" and rows["node-b"][3] == "1", rows
        pages.shot(driver, "counts")

        payloads = [snapshot(node)[1] for node in (a, b)] + ops_events(a, 2) + ops_events(b, 2)
        seen = json.loads(payloads[0])
        assert seen["broker"] == "redis" and [n["name"] for n in seen["nodes"]] == ["node-a", "node-b"], seen
        assert seen["pairings"] == {"waiting": 1, "connected": 1, "inputting": 0, "completed": 1, "cancelled": 0}, seen
        page_text = driver.find_element(By.TAG_NAME, "body").text + driver.page_source
        for secret in secrets_:
            for payload in payloads:
                assert secret not in payload, f"{secret!r} in an ops payload: {payload}"
            assert secret not in page_text, f"{secret!r} on the ops page"

        audit = a11y.Audit("en")
        audit(driver, "ops", "live")
        audit.check()
    finally:
        for stream in streams:
            stream.close()


def test_the_page_asks_again_for_a_wrong_token(nodes: tuple[Node, Node], browsers: Any) -> None:  # noqa: F811
    a, _ = nodes
    driver = browsers("pc", "ja")
    driver.get(a.base_url + "/ops")
    pages.wait_until(driver, lambda d: d.find_element(By.ID, "token").is_displayed(), "the token form")
    driver.find_element(By.ID, "token").send_keys("wrong-token-but-long-enough")
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    pages.wait_until(driver, lambda d: d.find_element(By.ID, "login-error").text == "トークンが正しくありません。", "the wrong-token message")
    assert not driver.find_element(By.ID, "board").is_displayed()
    audit = a11y.Audit("ja")
    audit(driver, "ops", "login")
    audit.check()


def test_the_page_says_when_the_address_is_refused(nodes: tuple[Node, Node], browsers: Any) -> None:  # noqa: F811
    """A stranger on the same address spends the budget of wrong tokens: the page says so (not "reconnecting")."""
    a, _ = nodes
    with a.client() as client:
        for _ in range(30):
            if client.get("/api/ops/snapshot", headers={"Authorization": "Bearer a-stranger-guessing-0000"}).status_code == 429:
                break
        refused = client.get("/api/ops/snapshot", headers=AUTH)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    driver = browsers("pc", "en")
    driver.get(a.base_url + "/ops")
    pages.wait_until(driver, lambda d: d.find_element(By.ID, "token").is_displayed(), "the token form")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    pages.wait_until(
        driver, lambda d: d.find_element(By.ID, "ops-state").text.startswith("Too many wrong tokens from this address; retrying in "),
        "the refusal message", WAIT)
