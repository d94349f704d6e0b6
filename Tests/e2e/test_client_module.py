"""`Public/js/tandem-client.js` in headless Chromium, used by a page of ANOTHER site (issue 19): the example page
`examples/embed/` served by Python's http.server at http://localhost:<port>, the Tandem node at
http://127.0.0.1:<port> (another host: cross-origin and cross-site, so Tandem's SameSite=Strict cookie is never sent
and the module uses the reader key it was given, as `?key=`).

- With the page's origin in `cors.allowedOrigins`: the module is imported from the node, the QR code shows and
  decodes (zbarimg) to the phone URL the page shows; a phone (httpx) validates with its token, starts typing and
  submits; the page shows each step, the same pairing code, and the submitted fields in order. Every request of the
  page to the node went without a cookie.
- With the origin not allowed: the import is refused by CORS; the page says so (a visible alert), shows no QR code
  and no data, and the node made no session.
- The `.d.ts` declares exactly the module's exports (no TypeScript compiler offline: the names are compared).

Needs: Debian `chromium`, `chromium-driver`, `zbar-tools`; `pip install -r Tests/e2e/requirements.txt`; a built binary
at $TANDEM_BINARY or .build/debug/tandem. Screenshots go to test-artifacts/browser/client-*.png. Every process is
stopped by its PID.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tandem_browser import Pages, browsers  # noqa: F401 (browsers: a fixture)
from tandem_e2e.nodes import REPO_ROOT, REQUEST_TIMEOUT, Cluster, Node
from tandem_e2e.phone import NAME, PHONE
from tandem_e2e.processes import LoggedProcess, free_loopback_port, poll

EMBED = REPO_ROOT / "examples" / "embed"
MODULE = REPO_ROOT / "Public" / "js" / "tandem-client.js"
TYPES = REPO_ROOT / "Public" / "js" / "tandem-client.d.ts"

pages = Pages("client-")
shot, wait_until = pages.shot, pages.wait_until


@pytest.fixture(scope="module")
def embed_origin() -> Iterator[str]:
    """The example page's own server: http.server on a free port, reached as `localhost` (another site than the
    node's 127.0.0.1)."""
    port = free_loopback_port()
    server = LoggedProcess([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(EMBED)])
    try:
        assert poll(lambda: _answers(f"http://127.0.0.1:{port}/index.html"), 10.0), server.tail()
        yield f"http://localhost:{port}"
    finally:
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


ROTATE_SECONDS = 5


def start_node(cluster: Cluster, allowed: str) -> Node:
    return cluster.tandem(
        "tandem",
        lambda port: {
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CORS_ALLOWED_ORIGINS": allowed,
            "PAIRING_QR_ROTATE_SECONDS": str(ROTATE_SECONDS),
        },
    )


def phone_url(driver: WebDriver, node: Node) -> tuple[str, str, str]:
    """The phone URL the embed shows, its session and its token."""
    url = text(driver, "phone-url")
    match = re.fullmatch(rf"{re.escape(node.base_url)}/phone\.html\?session=(s_[0-9a-f]+)&t=([0-9]+\.[A-Za-z0-9_-]+)", url)
    assert match, url
    return url, match[1], match[2]


def embed_page(driver: WebDriver, origin: str, node: Node) -> None:
    driver.get(f"{origin}/index.html?tandem={node.base_url}/")


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).get_attribute("textContent").strip()


def steps(driver: WebDriver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#steps li')].map((li) => li.dataset.step)")


def submitted(driver: WebDriver) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in driver.execute_script(
        "return [...document.querySelectorAll('#result dd')].map((dd) => [dd.dataset.field, dd.textContent])"
    )]


def qr_shown(driver: WebDriver) -> bool:
    return driver.execute_script(
        "const q = document.querySelector('#qr-slot img'); return q !== null && q.complete && q.naturalWidth > 0"
    )


def test_an_allowed_origin_embeds_the_pc_side(embed_origin: str, browsers: Any, tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        node = start_node(cluster, embed_origin)
        pc = browsers("pc", "en-US")
        pc.execute_cdp_cmd("Network.enable", {})
        embed_page(pc, embed_origin, node)
        wait_until(pc, lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "waiting", "the embed's waiting state")
        wait_until(pc, qr_shown, "the embedded QR image")
        first, session_id, _ = phone_url(pc, node)
        assert not pc.find_element(By.ID, "error").is_displayed()
        # The token rotates (GET /api/pairing with the key, from the other origin): a new URL and a new image.
        wait_until(pc, lambda d: text(d, "phone-url") != first, "the embed's QR code to rotate", ROTATE_SECONDS + 10)
        wait_until(pc, qr_shown, "the rotated QR image")
        url, rotated_id, token = phone_url(pc, node)
        assert rotated_id == session_id
        assert pages.decode_qr(pc, "embed-qr") == url

        with httpx.Client(base_url=node.base_url, timeout=REQUEST_TIMEOUT) as phone:
            validated = phone.get("/api/validate-session", params={"session": session_id, "t": token})
            assert validated.status_code == 200, validated.text
            wait_until(pc, lambda d: steps(d) == ["connected"], "the embed's connected step")
            assert text(pc, "pairing-code") == validated.json()["pairingCode"]
            shot(pc, "embed-connected")

            assert phone.post("/api/input-started", json={"sessionId": session_id}).status_code == 200
            wait_until(pc, lambda d: steps(d) == ["connected", "input-started"], "the embed's input-started step")

            submit = phone.post("/api/submit", json={"sessionId": session_id, "name": NAME, "phone": PHONE})
            assert submit.status_code == 200, submit.text
            wait_until(pc, lambda d: steps(d) == ["connected", "input-started", "complete"], "the embed's complete step")
        assert submitted(pc) == [("name", NAME), ("phone", PHONE)]
        assert pc.find_element(By.ID, "status").get_attribute("data-state") == "complete"
        shot(pc, "embed-complete")

        # The page's origin holds no Tandem cookie, and its stream carried the key (the cookie cannot go cross-site).
        assert pc.get_cookies() == []
        stream = pc.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('/api/events'))"
        )
        assert stream and all("key=" in name for name in stream), stream
        assert len(node.process.matching(r"POST /api/sessions 201")) == 1, node.log()


def test_leaving_the_embedding_page_cancels_its_session(embed_origin: str, browsers: Any, tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        node = start_node(cluster, embed_origin)
        pc = browsers("pc", "en-US")
        embed_page(pc, embed_origin, node)
        wait_until(pc, qr_shown, "the embedded QR image")
        _, session_id, token = phone_url(pc, node)
        with httpx.Client(base_url=node.base_url, timeout=REQUEST_TIMEOUT) as phone:
            assert phone.get("/api/validate-session", params={"session": session_id, "t": token}).status_code == 200
            wait_until(pc, lambda d: steps(d) == ["connected"], "the embed's connected step")
            pc.get("about:blank")  # pagehide: the module's keepalive cancel, with the key, from the other origin
            assert poll(lambda: phone.get("/api/validate-session", params={"session": session_id}).status_code == 404, 5.0)
            answer = phone.get("/api/validate-session", params={"session": session_id}).json()
            assert answer["code"] == "session_cancelled", answer


def test_an_origin_that_is_not_allowed_fails_cleanly(embed_origin: str, browsers: Any, tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        node = start_node(cluster, "https://someone-else.example")
        pc = browsers("pc", "en-US")
        embed_page(pc, embed_origin, node)
        wait_until(pc, lambda d: d.find_element(By.ID, "error").is_displayed(), "the embed's visible error")
        assert "cors.allowedOrigins" in text(pc, "error")
        assert pc.find_element(By.ID, "status").get_attribute("data-state") == "failed"
        assert pc.execute_script("return document.querySelector('#qr-slot img')") is None
        assert steps(pc) == [] and submitted(pc) == [] and text(pc, "phone-url") == ""
        shot(pc, "embed-refused")
        assert not node.process.matching(r"POST /api/sessions"), node.log()


def _exports(source: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, source, flags=re.MULTILINE))


def test_the_type_declarations_match_the_module() -> None:
    declared = _exports(TYPES.read_text(encoding="utf-8"), r"^export (?:declare )?(?:class|function|const|interface|type) (\w+)")
    exported = _exports(MODULE.read_text(encoding="utf-8"), r"^export (?:async )?(?:class|function|const) (\w+)")
    types_only = {"PairingOptions", "TandemErrorCode", "PairingStatus", "Submission", "PairingEventMap", "PairingEventType", "PairingEvent"}
    assert declared - types_only == exported, (declared, exported)
    # The event names the declarations know are the module's.
    module_events = set(re.findall(r"'([a-z-]+)'", re.search(r"EVENT_TYPES = Object\.freeze\(\[(.*?)\]\)", MODULE.read_text(), re.S)[1]))
    map_body = re.search(r"interface PairingEventMap \{(.*?)\n\}", TYPES.read_text(), re.S)[1]
    declared_events = set(re.findall(r"^  '?([a-z-]+)'?:", map_body, flags=re.MULTILINE))
    assert module_events == declared_events, (module_events, declared_events)
