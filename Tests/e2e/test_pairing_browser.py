"""The pairing in real headless Chromium (docs/protocol.md, "The phone's claim", "The QR code goes stale", "The phone's
own channel"): the PC page and the phone page side by side, each in its own browser (they share no cookies), against
the real `tandem` binary.

Every test runs twice: on one node with the in-memory broker, and on two nodes sharing one `redis-server`, where the
PC page and its stream are on node A and the phone page, its calls and its own channel are on node B (the QR code's
URL names A; the phone opens the same path on B).

The nodes run with a short grace (PAIRING_GRACE_SECONDS=3, SSE retry 1 s) and a short QR rotation
(PAIRING_QR_ROTATE_SECONDS=5: a token is good for 10 s). What is checked:
- the QR code decodes (zbarimg) to a phone URL with `t=`, and rotates: a new image and URL every 5 s, swapped only
  once the new image has loaded, and no more once a phone has claimed the session;
- the pairing code is the same on both screens; the phone's address bar loses its token, and a reload still works;
- a second phone on the same URL: a locked 409 already_claimed dialog, with the server's words;
- a URL whose token was issued more than 10 s ago: a locked 410 qr_stale dialog and no form;
- the PC reloads: the phone is locked with the article's words within 1 s, and a submission is refused;
- the PC's tab goes away without a word (its cancel never sent): the phone is told within the grace + 1 s;
- the phone's tab goes away: the PC says so (a polite live region) after the grace, and stops saying it when the
  phone page is opened again;
- "not my phone" on the PC: the phone shows that the PC refused it, and the PC shows a new QR code;
- a phone whose key cookie is gone is locked out (409 already_claimed) at its next call;
- (two nodes only) the phone's node restarts while the PC refuses the phone: the phone's channel reconnects by
  itself, resumes with Last-Event-ID, and the page shows that the PC refused it.

Needs: Debian `chromium`, `chromium-driver`, `zbar-tools`, `redis-server`; `pip install -r
Tests/e2e/requirements.txt`; a built binary at $TANDEM_BINARY or .build/debug/tandem. Screenshots of every step go to
test-artifacts/browser/pairing-*.png. Every wait is bounded, and every process is stopped by its PID.
"""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tandem_browser import JA, WAIT, Pages, browsers, dialog, fill, pc_status, press_escape, qr_loaded  # noqa: F401 (browsers: a fixture)
from tandem_e2e.nodes import REQUEST_TIMEOUT, Cluster, Node
from tandem_e2e.phone import NAME, PHONE

GRACE_SECONDS = 3
RETRY_MILLISECONDS = 1000
ROTATE_SECONDS = 5
STOP_TIMEOUT = 10.0
SETTINGS = {
    "PAIRING_GRACE_SECONDS": str(GRACE_SECONDS),
    "SSE_RETRY_MILLISECONDS": str(RETRY_MILLISECONDS),
    "PAIRING_QR_ROTATE_SECONDS": str(ROTATE_SECONDS),
    "HEARTBEAT_SECONDS": "2",
}

# The words of the pairing (docs/protocol.md), as the pages and the server say them in Japanese.
CLAIMED = "このQRコードは別の端末ですでに使われています。"
STALE = "このQRコードは古くなっています。PCに表示されている最新のQRコードを読み取ってください。"
REJECTED = "PCでこのスマートフォンとの接続が拒否されました。"
PHONE_LEFT = "スマートフォンとの接続が切れました"

PHONE_URL = re.compile(r"(?P<base>http://127\.0\.0\.1:\d+)/phone\.html\?session=(?P<id>s_[A-Za-z0-9_-]+)&t=(?P<t>\d+\.[A-Za-z0-9_-]+)")

# Drops the PC page's own cancel (its pagehide `keepalive` fetch), as if the tab crashed or the network dropped:
# only the server's presence check can then tell the phone. Added before any page script runs (and not subject to
# the page's CSP).
NO_CANCEL = r"""
(() => {
  const native = window.fetch;
  window.fetch = (resource, init) => String(resource).includes('/api/cancel')
    ? Promise.resolve(new Response('{}', { status: 200 }))
    : native(resource, init);
})();
"""

# Records, on the phone page, when its dialog opened (Date.now(), the same clock as the PC's and this process's).
DIALOG_CLOCK = r"""
const d = document.getElementById('dialog');
window.__dialogOpenedAt = d.open ? Date.now() : null;
new MutationObserver(() => { if (d.open && window.__dialogOpenedAt === null) window.__dialogOpenedAt = Date.now(); })
  .observe(d, { attributes: true, attributeFilter: ['open'] });
"""

# Records, on the PC page, every change of the QR image's address and whether the new image was already there
# (loaded and decoded) when it was swapped in: a swap that shows an empty or half-loaded image is a flicker.
QR_RECORDER = r"""
const qr = document.getElementById('qr');
window.__qr = [];
new MutationObserver(() => window.__qr.push({
  src: qr.getAttribute('src'), complete: qr.complete, width: qr.naturalWidth, url: document.getElementById('phone-url').textContent,
  t: Date.now(),
})).observe(qr, { attributes: true, attributeFilter: ['src'] });
"""


# --------------------------------------------------------------------------------------------------------------
# The nodes


@dataclass
class Deployment:
    """Where the PC page (and its stream) runs, and where the phone's browser goes."""

    name: str
    pc: Node
    phone: Node
    cluster: Cluster
    phone_settings: dict[str, str]  # to start the phone's node again

    def for_phone(self, url: str) -> str:
        """The URL of the QR code (it names the PC's node) on the phone's node."""
        assert url.startswith(self.pc.base_url + "/"), url
        return self.phone.base_url + url[len(self.pc.base_url):]


@pytest.fixture(scope="module", params=["memory", "redis"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with Cluster(tmp_path_factory.mktemp(f"pairing-{request.param}"), stop_timeout=STOP_TIMEOUT) as cluster:
        if request.param == "memory":
            node = cluster.tandem("tandem", lambda port: {**SETTINGS, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
            yield Deployment("memory", node, node, cluster, {})
            return
        redis_url = cluster.redis().url
        shared = {**SETTINGS, "BROKER": "redis", "REDIS_URL": redis_url}
        a = cluster.tandem("A", lambda port: {**shared, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
        b_settings = {**shared, "PUBLIC_BASE_URL": a.base_url}
        b = cluster.tandem("B", b_settings)
        yield Deployment("redis", a, b, cluster, b_settings)


# --------------------------------------------------------------------------------------------------------------
# Steps


pages = Pages("pairing-")
decode_qr = pages.decode_qr
shot, wait_until, wait_status = pages.shot, pages.wait_until, pages.wait_status


def wait_locked(driver: WebDriver, text: str, what: str, timeout: float = WAIT) -> dict[str, Any]:
    """Waits for the page's dialog to show `text`, and checks that it is modal and has no button."""
    state = wait_until(driver, lambda d: (s := dialog(d))["open"] and s["text"] == text and s, what, timeout)
    assert state["modal"] is True and state["kind"] == "error" and state["confirm"] is False, state
    return state






def open_pc(driver: WebDriver, deployment: Deployment) -> str:
    """Opens the PC page on its node and waits for the session's QR code; returns the phone URL it shows."""
    driver.get(deployment.pc.base_url + "/")
    wait_status(driver, "waiting", JA["waiting"])
    wait_until(driver, qr_loaded, "the QR image")
    return shown_url(driver)


def shown_url(driver: WebDriver) -> str:
    """The phone URL the PC page shows now (it changes with every rotation)."""
    url = driver.find_element(By.ID, "phone-url").get_attribute("textContent")
    assert PHONE_URL.fullmatch(url), f"the PC shows {url!r}, not a phone URL with a pairing token"
    return url


def open_form(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_until(driver, lambda d: d.find_element(By.ID, "info-form").is_displayed(), "the phone's form")


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).get_attribute("textContent").strip()


def shown_code(driver: WebDriver) -> str:
    """The pairing code a page shows ('' while it shows none)."""
    element = driver.find_element(By.ID, "pairing-code")
    return element.get_attribute("textContent").strip() if driver.find_element(By.ID, "pairing").is_displayed() else ""


def session_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["session"][0]


def submit_from_page(driver: WebDriver, session_id: str) -> dict[str, Any]:
    """POSTs a submission from the phone page itself (its cookies, its origin), whatever its form allows."""
    return driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('/api/submit', {method: 'POST', headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({sessionId: arguments[0], name: 'x', phone: '0901234567'})})
          .then(async (r) => done({status: r.status, body: await r.json().catch(() => null)}))
          .catch((e) => done({status: 0, body: String(e)}));
        """,
        session_id,
    )


def server_message(url: str) -> tuple[int, dict[str, Any]]:
    """What validate-session answers a device without the phone key (a fresh client, no cookies) for `url`."""
    query = parse_qs(urlsplit(url).query)
    params = {"session": query["session"][0]}
    if "t" in query:
        params["t"] = query["t"][0]
    base = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT, headers={"Accept-Language": "ja"}) as fresh:
        response = fresh.get("/api/validate-session", params=params)
    return response.status_code, response.json()


def form_disabled(driver: WebDriver) -> bool:
    return all(not driver.find_element(By.ID, element_id).is_enabled() for element_id in ("name", "phone", "submit"))


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_the_qr_code_rotates_and_both_screens_show_the_same_pairing_code(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    url = open_pc(pc, deployment)
    loaded_at = time.monotonic()
    pc.execute_script(QR_RECORDER)

    # The QR code is the URL the page shows, with a pairing token; the image's address carries the same token.
    decoded = decode_qr(pc, f"{deployment.name}-qr")
    assert decoded == url, f"the QR code says {decoded!r}, the page {url!r}"
    match = PHONE_URL.fullmatch(decoded)
    assert match and match["base"] == deployment.pc.base_url, decoded
    src = pc.find_element(By.ID, "qr").get_attribute("src")
    assert src == f"{deployment.pc.base_url}/api/qr?session={match['id']}&t={match['t']}", src

    # After qrRotateSeconds, a new token: a new image and URL, swapped in only once the image had loaded.
    wait_until(pc, lambda d: d.execute_script("return window.__qr.length") >= 1, "the QR code to rotate", ROTATE_SECONDS + WAIT)
    rotated_after = time.monotonic() - loaded_at
    swaps = pc.execute_script("return window.__qr")
    swap = swaps[0]
    assert rotated_after >= ROTATE_SECONDS - 1.0, f"the QR code rotated after {rotated_after:.1f} s, not {ROTATE_SECONDS}"
    assert swap["src"] != src.removeprefix(deployment.pc.base_url), swaps
    assert swap["complete"] is True and swap["width"] > 0, f"the new QR image was not loaded when it was swapped in: {swaps}"
    new_url = shown_url(pc)
    new_match = PHONE_URL.fullmatch(new_url)
    assert new_match and new_match["id"] == match["id"] and new_match["t"] != match["t"], (url, new_url)
    assert swap["src"] == f"/api/qr?session={new_match['id']}&t={new_match['t']}", swaps
    assert decode_qr(pc, f"{deployment.name}-qr-rotated") == new_url

    # The phone opens the current code: the form, the pairing code, and no token left in its address bar.
    open_form(phone, deployment.for_phone(shown_url(pc)))
    wait_until(phone, lambda d: re.fullmatch(r"\d{4}", shown_code(d)), "the phone's pairing code")
    code = shown_code(phone)
    assert "t=" not in phone.current_url and phone.current_url.endswith(f"/phone.html?session={match['id']}"), phone.current_url
    assert text_of(phone, "pairing").startswith("確認コード"), text_of(phone, "pairing")
    shot(phone, f"{deployment.name}-phone-pairing-code")

    # The PC: connected, the same code, the "not my phone" button; the QR code is used and rotates no more.
    wait_status(pc, "connected", JA["connected"])
    wait_until(pc, lambda d: shown_code(d) == code, f"the PC to show the pairing code {code}")
    assert pc.find_element(By.ID, "not-my-phone").is_displayed()
    assert pc.find_element(By.ID, "not-my-phone").text == "自分のスマートフォンではない"
    assert "used" in pc.find_element(By.ID, "qr").get_attribute("class").split()
    shot(pc, f"{deployment.name}-pc-pairing-code")
    swaps_at_claim = len(pc.execute_script("return window.__qr"))
    time.sleep(ROTATE_SECONDS + 1)
    assert len(pc.execute_script("return window.__qr")) == swaps_at_claim, "the QR code kept rotating after the claim"

    # A reload of the phone page (its address has no token now): the cookie carries the claim.
    phone.refresh()
    wait_until(phone, lambda d: d.find_element(By.ID, "info-form").is_displayed() and shown_code(d) == code, "the form again after a reload")

    fill(phone, NAME, PHONE)
    wait_status(pc, "input-started", JA["input-started"])
    phone.find_element(By.ID, "submit").click()
    wait_until(phone, lambda d: (s := dialog(d))["open"] and s["title"] == JA["submitted"], "the phone's success dialog")
    wait_status(pc, "completed", JA["completed"])
    assert not pc.find_element(By.ID, "not-my-phone").is_displayed(), "a completed session offers 'not my phone'"
    assert pc.find_element(By.ID, "result-name").get_attribute("textContent") == NAME
    shot(pc, f"{deployment.name}-pc-completed")


def test_a_second_phone_on_the_same_qr_code_is_refused(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    first = browsers("phone")
    second = browsers("phone")
    url = deployment.for_phone(open_pc(pc, deployment))
    open_form(first, url)
    wait_until(first, lambda d: shown_code(d) != "", "the first phone's pairing code")
    code = shown_code(first)

    # The second phone, with no phone key of its own: a locked dialog with the server's words, no form.
    second.get(url)
    state = wait_locked(second, CLAIMED, "the already-claimed dialog")
    assert not second.find_element(By.ID, "info-form").is_displayed()
    assert shown_code(second) == "", "the second phone shows the pairing code"
    status, body = server_message(url)
    assert (status, body.get("code"), body.get("message")) == (409, "already_claimed", state["text"]), body
    press_escape(second)
    assert dialog(second)["open"] is True, "Escape dismissed the already-claimed dialog"
    shot(second, f"{deployment.name}-second-phone-refused")
    # It changed nothing: the PC still shows the first phone's code, and the first phone completes the session.
    wait_until(pc, lambda d: shown_code(d) == code, "the PC to show the first phone's code")
    fill(first, NAME, PHONE)
    first.find_element(By.ID, "submit").click()
    wait_status(pc, "completed", JA["completed"])
    assert pc.find_element(By.ID, "result-phone").get_attribute("textContent") == PHONE


def test_a_stale_qr_code_is_refused(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    url = deployment.for_phone(open_pc(pc, deployment))
    issued = int(PHONE_URL.fullmatch(url)["t"].split(".")[0])
    time.sleep(max(0.0, issued + 2 * ROTATE_SECONDS + 1 - time.time()))  # the token is older than 2 x qrRotateSeconds

    phone.get(url)
    state = wait_locked(phone, STALE, "the qr-stale dialog")
    assert not phone.find_element(By.ID, "info-form").is_displayed(), "a stale QR code shows the form"
    status, body = server_message(url)
    assert (status, body.get("code"), body.get("message")) == (410, "qr_stale", state["text"]), body
    press_escape(phone)
    assert dialog(phone)["open"] is True, "Escape dismissed the qr-stale dialog"
    shot(phone, f"{deployment.name}-phone-qr-stale")
    assert pc_status(pc) == ("waiting", JA["waiting"]), "a stale QR code claimed the session"

    # The code the PC shows now works, on the same phone.
    open_form(phone, deployment.for_phone(shown_url(pc)))
    wait_status(pc, "connected", JA["connected"])


def test_a_pc_reload_locks_the_phone_within_a_second(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    url = deployment.for_phone(open_pc(pc, deployment))
    open_form(phone, url)
    phone.find_element(By.ID, "name").send_keys("山田")
    wait_status(pc, "input-started", JA["input-started"])
    phone.execute_script(DIALOG_CLOCK)
    pc.execute_script("addEventListener('pagehide', () => sessionStorage.setItem('pairing-test-hidden-at', String(Date.now())))")

    pc.refresh()
    state = wait_locked(phone, JA["invalid"], "the phone locked after the PC's reload", timeout=3.0)
    hidden_at = int(pc.execute_script("return sessionStorage.getItem('pairing-test-hidden-at')"))
    opened_at = phone.execute_script("return window.__dialogOpenedAt")
    assert opened_at is not None, state
    told_after = (opened_at - hidden_at) / 1000
    assert told_after <= 1.0, f"the phone was told {told_after:.2f} s after the PC's page went away"
    assert form_disabled(phone), "the phone's form is still enabled"
    shot(phone, f"{deployment.name}-phone-after-pc-reload")

    # Whatever the page does, the server refuses a submission to the ended session.
    answer = submit_from_page(phone, session_of(url))
    assert answer["status"] == 404 and answer["body"]["code"] == "session_cancelled", answer
    # The PC has a new session.
    wait_status(pc, "waiting", JA["waiting"])
    assert session_of(shown_url(pc)) != session_of(url)
    print(f"\n[pairing {deployment.name}] the phone was locked {told_after:.2f} s after the PC reloaded")


def test_a_pc_gone_without_a_word_is_told_to_the_phone_within_the_grace(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    keep = pc.current_window_handle  # the browser stays up after the PC's tab is closed
    pc.switch_to.new_window("tab")
    pc.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_CANCEL})  # this tab's documents
    url = deployment.for_phone(open_pc(pc, deployment))
    open_form(phone, url)
    wait_status(pc, "connected", JA["connected"])
    phone.execute_script(DIALOG_CLOCK)

    closed_at = time.time()
    pc.close()
    pc.switch_to.window(keep)
    wait_locked(phone, JA["invalid"], "the phone told that the PC is gone", timeout=GRACE_SECONDS + 1 + WAIT)
    told_after = phone.execute_script("return window.__dialogOpenedAt") / 1000 - closed_at
    assert told_after <= GRACE_SECONDS + 1.0, f"the phone was told {told_after:.2f} s after the PC's tab closed (grace {GRACE_SECONDS} s)"
    assert told_after >= GRACE_SECONDS - 1.0, f"the phone was told after {told_after:.2f} s, before the grace ({GRACE_SECONDS} s) was over"
    assert form_disabled(phone)
    shot(phone, f"{deployment.name}-phone-after-pc-gone")
    answer = submit_from_page(phone, session_of(url))
    assert answer["status"] == 404 and answer["body"]["code"] == "session_cancelled", answer
    print(f"\n[pairing {deployment.name}] the phone was told {told_after:.2f} s after the PC's tab closed")


def test_the_pc_notes_when_the_phone_is_gone_and_back(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    keep = phone.current_window_handle
    url = deployment.for_phone(open_pc(pc, deployment))
    phone.switch_to.new_window("tab")
    open_form(phone, url)
    wait_until(phone, lambda d: shown_code(d) != "", "the phone's pairing code")
    code = shown_code(phone)
    wait_status(pc, "connected", JA["connected"])
    address = phone.current_url  # what the phone's history keeps: no token
    note = pc.find_element(By.ID, "phone-left")
    assert (note.get_attribute("role"), note.get_attribute("aria-live")) == ("status", "polite")
    assert text_of(pc, "phone-left") == ""

    # The phone's key (an HttpOnly cookie scoped to /api), to send a step as the phone while its page is gone.
    phone_key = next(c for c in phone.execute_cdp_cmd("Network.getAllCookies", {})["cookies"] if c["name"].startswith("tandem_phone_"))

    closed_at = time.monotonic()
    phone.close()
    phone.switch_to.window(keep)
    wait_until(pc, lambda d: text_of(d, "phone-left") == PHONE_LEFT, "the PC's phone-left note", timeout=GRACE_SECONDS + 2 + WAIT)
    noted_after = time.monotonic() - closed_at
    assert noted_after >= GRACE_SECONDS - 1.0, f"the PC said the phone left after {noted_after:.1f} s, within the grace"
    assert note.is_displayed()
    # The session is still connected; its line no longer says the phone is.
    assert pc_status(pc) == ("connected", JA["phone_away"]), "the phone's absence changed the session, or the line did not say it"
    shot(pc, f"{deployment.name}-pc-phone-left")

    # A step of the phone's arrives while its page is still away (its POSTs get through, its channel does not): the
    # session moves on, and the line goes on waiting for the phone rather than saying it types.
    answer = httpx.post(
        deployment.phone.base_url + "/api/input-started", json={"sessionId": session_of(url)},
        headers={"Cookie": f"{phone_key['name']}={phone_key['value']}"}, timeout=REQUEST_TIMEOUT)
    assert answer.status_code == 200, answer.text
    wait_status(pc, "input-started", JA["phone_away"])
    assert text_of(pc, "phone-left") == PHONE_LEFT

    # The phone page opened again: the note goes, the line says connected again, the session goes on.
    phone.switch_to.new_window("tab")
    open_form(phone, address)
    wait_until(pc, lambda d: text_of(d, "phone-left") == "", "the PC's note to clear when the phone is back")
    wait_status(pc, "input-started", JA["input-started"])
    assert shown_code(phone) == code and shown_code(pc) == code
    shot(pc, f"{deployment.name}-pc-phone-returned")
    fill(phone, NAME, PHONE)
    phone.find_element(By.ID, "submit").click()
    wait_status(pc, "completed", JA["completed"])
    print(f"\n[pairing {deployment.name}] the PC noted the phone gone {noted_after:.1f} s after its tab closed")


def test_not_my_phone_ends_the_session_and_makes_a_new_qr_code(deployment: Deployment, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    url = deployment.for_phone(open_pc(pc, deployment))
    open_form(phone, url)
    wait_until(pc, lambda d: shown_code(d) != "" and d.find_element(By.ID, "not-my-phone").is_displayed(), "the PC's pairing code")
    phone.execute_script(DIALOG_CLOCK)

    clicked_at = time.time()
    pc.find_element(By.ID, "not-my-phone").click()
    wait_locked(phone, REJECTED, "the phone told that the PC refused it")
    told_after = phone.execute_script("return window.__dialogOpenedAt") / 1000 - clicked_at
    assert told_after <= 1.0, f"the phone was told {told_after:.2f} s after 'not my phone'"
    assert form_disabled(phone)
    shot(phone, f"{deployment.name}-phone-rejected")
    answer = submit_from_page(phone, session_of(url))
    assert answer["status"] == 404 and answer["body"]["code"] == "session_cancelled", answer

    # The PC: a new session with a new, unused QR code; no pairing code; focus on the page's heading.
    wait_status(pc, "waiting", JA["waiting"])
    wait_until(pc, qr_loaded, "the new QR image")
    new_url = shown_url(pc)
    assert session_of(new_url) != session_of(url)
    assert "used" not in pc.find_element(By.ID, "qr").get_attribute("class").split()
    assert not pc.find_element(By.ID, "pairing").is_displayed()
    assert pc.execute_script("return document.activeElement === document.querySelector('main h1')")
    decoded = decode_qr(pc, f"{deployment.name}-pc-new-qr")
    assert PHONE_URL.fullmatch(decoded) and session_of(decoded) == session_of(new_url), (decoded, new_url)

    # The same phone may pair with the new code.
    open_form(phone, deployment.for_phone(shown_url(pc)))
    wait_status(pc, "connected", JA["connected"])


def test_a_phone_that_lost_its_key_is_locked_out(deployment: Deployment, browsers: Any) -> None:
    """The phone key cookie is gone (cleared, or the page opened in another browser of the phone): its next call is
    refused with 409 already_claimed, and the page locks with those words rather than inviting a retry."""
    pc = browsers("pc")
    phone = browsers("phone")
    url = deployment.for_phone(open_pc(pc, deployment))
    open_form(phone, url)
    wait_status(pc, "connected", JA["connected"])
    phone.execute_cdp_cmd("Network.clearBrowserCookies", {})  # the key is HttpOnly, for /api only
    phone.find_element(By.ID, "name").send_keys("山田")  # input-started, without the key
    wait_locked(phone, CLAIMED, "the phone locked once its key is gone")
    assert form_disabled(phone)
    shot(phone, f"{deployment.name}-phone-key-lost")
    answer = submit_from_page(phone, session_of(url))
    assert answer["status"] == 409 and answer["body"]["code"] == "already_claimed", answer
    assert pc_status(pc) == ("connected", JA["connected"]), "a call without the phone key moved the session"


# Counts, on the phone page, how often its EventSource opened and failed (added before any page script runs).
CHANNEL_RECORDER = r"""
(() => {
  const Native = window.EventSource;
  window.__channel = { opens: 0, errors: 0 };
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      this.addEventListener('open', () => { window.__channel.opens += 1; });
      this.addEventListener('error', () => { window.__channel.errors += 1; });
    }
  };
})();
"""


def test_the_phone_hears_what_it_missed_while_its_node_restarted(deployment: Deployment, browsers: Any) -> None:
    """The phone's node is down (drained, then restarted) when the PC refuses the phone; the phone's channel keeps
    reconnecting by itself, resumes with Last-Event-ID once the node is back, and the page shows that the PC refused
    it, not only that the session is over."""
    if deployment.phone is deployment.pc:
        pytest.skip("one node with the in-memory broker: its sessions do not outlive a restart")
    pc = browsers("pc")
    phone = browsers("phone")
    phone.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CHANNEL_RECORDER})
    url = deployment.for_phone(open_pc(pc, deployment))
    open_form(phone, url)
    wait_until(pc, lambda d: d.find_element(By.ID, "not-my-phone").is_displayed(), "the PC's 'not my phone' button")
    wait_until(phone, lambda d: d.execute_script("return window.__channel.opens") == 1, "the phone's channel to open")

    deployment.phone.process.stop(signal.SIGTERM)
    wait_until(phone, lambda d: d.execute_script("return window.__channel.errors") >= 1, "the phone's channel to drop")
    pc.find_element(By.ID, "not-my-phone").click()
    wait_status(pc, "waiting", JA["waiting"])
    time.sleep(1.0)
    assert dialog(phone)["open"] is False, "the phone heard of the end while its node was down"
    deployment.phone = deployment.cluster.tandem(deployment.phone.name, deployment.phone_settings, port=deployment.phone.port, retry_delay=0.5)

    wait_locked(phone, REJECTED, "the phone told, once its node is back, that the PC refused it")
    state = phone.execute_script("return [window.__channel.opens, document.readyState]")
    assert state[0] >= 2, f"the channel did not reconnect: {state}"
    assert form_disabled(phone)
    shot(phone, f"{deployment.name}-phone-rejected-after-node-restart")
