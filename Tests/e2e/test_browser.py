"""The PC page and the phone page in real headless Chromium, against the real `tandem` binary.

The PC page runs in a desktop-sized window and the phone page in another with mobile emulation. The QR code is
proven, not assumed: the test takes a screenshot of the PC page, decodes it with `zbarimg` and opens the URL it
finds as the phone. Then it checks the PC's live status (connected → inputting → completed), the result dialog
(Japanese text and a `<script>` name shown as text), and the article's four error cases on the phone: the dialog's
text, whether Escape can dismiss it, and the state of the form.

A second server with a short session TTL covers expiry: the phone notices within its 5 s poll, and the PC makes a
new session by itself, after which the old QR URL is the article's "invalid session".

Needs: Debian `chromium`, `chromium-driver`, `zbar-tools`; `pip install -r Tests/e2e/requirements.txt`; a built
binary at $TANDEM_BINARY or .build/debug/tandem. Screenshots of every step go to test-artifacts/browser/.

Every wait is bounded: WebDriverWait with a timeout, page-load and script timeouts on each browser, timeouts on
every subprocess, and the servers are stopped by PID at the end.
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tandem_browser import JA, WAIT, Pages, browsers, dialog, fill, pc_status, press_escape, qr_loaded, serve_pages  # noqa: F401 (browsers: a fixture)
from tandem_e2e.nodes import Node
from tandem_e2e.phone import PHONE

STOP_TIMEOUT = 5.0
SHORT_TTL_SECONDS = 12
POLL_SECONDS = 5  # the phone's validate-session poll
EXPIRY_SLACK = 3.0

EN_INVALID = "This session is not valid. The QR code screen on the main device may have been refreshed."
CLAIMED = "このQRコードは別の端末ですでに使われています。"

# 20 characters as people see them, the server's limit: Japanese, and markup that must stay text.
NAME = "山田<script>1</script>"


# --------------------------------------------------------------------------------------------------------------
# Servers


@pytest.fixture(scope="module")
def server() -> Iterator[Node]:
    yield from serve_pages(None, STOP_TIMEOUT)


@pytest.fixture(scope="module")
def short_server() -> Iterator[Node]:
    yield from serve_pages(SHORT_TTL_SECONDS, STOP_TIMEOUT)


# --------------------------------------------------------------------------------------------------------------
# Browsers


# --------------------------------------------------------------------------------------------------------------
# Helpers


pages = Pages()
decode_qr = pages.decode_qr
shot, wait_until, wait_status, open_phone = pages.shot, pages.wait_until, pages.wait_status, pages.open_phone


def wait_dialog(driver: WebDriver, text: str, what: str, timeout: float = WAIT) -> dict[str, Any]:
    return wait_until(driver, lambda d: (state := dialog(d))["open"] and state["text"] == text and state, what, timeout)






def open_pc(driver: WebDriver, server: Node) -> str:
    """Opens the PC page, waits for its QR code and returns the URL decoded from a screenshot of it."""
    driver.get(server.base_url + "/")
    wait_status(driver, "waiting", JA["waiting"])
    wait_until(driver, qr_loaded, "QR image")
    url = decode_qr(driver, "pc-qr")
    assert re.fullmatch(re.escape(server.base_url) + r"/phone\.html\?session=[A-Za-z0-9_-]+&t=[0-9]+\.[A-Za-z0-9_-]+", url), url
    assert driver.find_element(By.ID, "phone-url").text == url
    return url




def submit_enabled(driver: WebDriver) -> bool:
    return driver.find_element(By.ID, "submit").is_enabled()


# --------------------------------------------------------------------------------------------------------------
# Tests


def test_pages_are_served_with_a_strict_content_security_policy(server: Node, browsers: Any) -> None:
    driver = browsers("pc")
    driver.get(server.base_url + "/")
    wait_status(driver, "waiting", JA["waiting"])
    # The page's own resources loaded under the policy: no CSP violation reached the console.
    logs = driver.get_log("browser")
    violations = [entry for entry in logs if "Content Security Policy" in entry.get("message", "")]
    assert violations == [], violations


def test_pairing_flow_through_the_qr_code(server: Node, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")

    url = open_pc(pc, server)
    assert dialog(pc)["open"] is False

    open_phone(phone, url)
    shot(phone, "phone-form")
    wait_status(pc, "connected", JA["connected"])
    shot(pc, "pc-connected")

    fill(phone, NAME, PHONE)
    assert phone.find_element(By.ID, "name-count").text == "20/20"
    wait_status(pc, "input-started", JA["input-started"])
    shot(pc, "pc-inputting")
    shot(phone, "phone-filled")

    # Error case 4: the network is down when the phone sends. A dismissable dialog; the button works again.
    phone.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        phone.find_element(By.ID, "submit").click()
        state = wait_dialog(phone, JA["network"], "the network error dialog")
        assert state["kind"] == "error" and state["confirm"] is True and state["modal"] is True
        shot(phone, "phone-network-error")
        press_escape(phone)
        wait_until(phone, lambda d: not dialog(d)["open"], "Escape closing the network error dialog")
        assert submit_enabled(phone)
        assert pc_status(pc)[0] == "input-started"
    finally:
        phone.delete_network_conditions()

    # Error case 3: the server refuses what the page cannot check (a control character in the name). Its message in
    # a dismissable dialog with OK; the button works again.
    phone.execute_script("document.getElementById('name').value = arguments[0]", "山田\u0007")
    phone.find_element(By.ID, "submit").click()
    state = wait_dialog(phone, JA["control_characters"], "the server's error in a dialog")
    assert state["kind"] == "error" and state["confirm"] is True
    shot(phone, "phone-submit-error")
    phone.find_element(By.CSS_SELECTOR, "#dialog .dialog-confirm").click()
    wait_until(phone, lambda d: not dialog(d)["open"], "OK closing the error dialog")
    assert submit_enabled(phone)
    fill(phone, NAME, PHONE)

    # Back online: the same button sends the form.
    phone.find_element(By.ID, "submit").click()
    state = wait_dialog(phone, "メインデバイスの画面をご確認ください。", "the phone's success dialog")
    assert state["title"] == JA["submitted"] and state["kind"] == "success"
    assert phone.find_element(By.ID, "done").is_displayed()
    assert not phone.find_element(By.ID, "info-form").is_displayed()
    shot(phone, "phone-completed")

    wait_status(pc, "completed", JA["completed"])
    state = wait_until(pc, lambda d: (s := dialog(d))["open"] and s, "the PC's result dialog")
    assert state["title"] == JA["complete_title"] and state["kind"] == "success" and state["confirm"]
    # Exactly what the phone typed, as text: the markup in the name was not parsed.
    assert pc.find_element(By.ID, "result-name").get_attribute("textContent") == NAME
    assert pc.find_element(By.ID, "result-phone").get_attribute("textContent") == PHONE
    assert pc.execute_script("return document.querySelectorAll('#dialog script').length") == 0
    shot(pc, "pc-result-dialog")
    pc.find_element(By.CSS_SELECTOR, "#dialog .dialog-confirm").click()
    wait_until(pc, lambda d: not dialog(d)["open"], "OK closing the PC's dialog")
    assert pc_status(pc) == ("completed", JA["completed"])
    shot(pc, "pc-completed")

    # A second phone (or a photo of the QR code) on the completed session learns before typing that the session is
    # another device's: no form, a dialog that cannot be dismissed.
    second = browsers("phone")
    second.get(url)
    state = wait_dialog(second, CLAIMED, "the already-claimed dialog")
    assert state["confirm"] is False and state["modal"] is True
    assert not second.find_element(By.ID, "info-form").is_displayed()
    shot(second, "phone-already-claimed")
    # The phone that submitted, opening the page again, learns that it is done.
    phone.get(phone.current_url)
    state = wait_dialog(phone, JA["session_completed"], "the already-submitted dialog")
    assert state["confirm"] is False and state["modal"] is True
    assert not phone.find_element(By.ID, "info-form").is_displayed()
    shot(phone, "phone-already-submitted")
    # The PC still shows the first phone's result.
    assert pc_status(pc) == ("completed", JA["completed"])


def test_client_checks_the_limits_before_sending(server: Node, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")
    open_phone(phone, open_pc(pc, server))
    # The client checks the server's limits first: 21 characters never leave the phone.
    fill(phone, "あ" * 21, PHONE)
    phone.find_element(By.ID, "submit").click()
    wait_until(phone, lambda d: d.find_element(By.ID, "name-error").text == JA["name_too_long"], "the inline length error")
    assert dialog(phone)["open"] is False
    assert phone.find_element(By.ID, "name-count").text == "21/20"
    shot(phone, "phone-too-long")

    # What only the server checks, shown under each field by its path: a bidi override in the name (it would
    # reorder what the PC shows) and letters as a phone number. The first error is also the dialog's message.
    invalid_characters = "使用できない文字が含まれています"
    phone_format = "電話番号は数字で入力してください（先頭の+と、スペース・-・(・)・. は使えます）"
    fill(phone, "佐藤\u202e花子", "call me")
    phone.find_element(By.ID, "submit").click()
    wait_dialog(phone, invalid_characters, "the server's field error in a dialog")
    assert phone.find_element(By.ID, "name-error").text == invalid_characters
    assert phone.find_element(By.ID, "phone-error").text == phone_format
    assert phone.find_element(By.ID, "phone").get_attribute("aria-invalid") == "true"
    shot(phone, "phone-server-field-errors")
    phone.find_element(By.CSS_SELECTOR, "#dialog .dialog-confirm").click()
    wait_until(phone, lambda d: not dialog(d)["open"], "OK closing the field-error dialog")


def test_a_new_session_on_the_pc_locks_the_phone_and_keeps_its_data_from_vanishing(server: Node, browsers: Any) -> None:
    """The article's error case 1, as a user found it broken: the phone is typing, the PC presses 新しいセッション.
    The phone is told (at its next poll) in the article's words, and its submission is refused, not "succeeded"."""
    pc = browsers("pc")
    phone = browsers("phone")
    url = open_pc(pc, server)
    open_phone(phone, url)
    wait_status(pc, "connected", JA["connected"])
    fill(phone, "山田", PHONE)
    wait_status(pc, "input-started", JA["input-started"])
    pc.find_element(By.ID, "new-session").click()
    wait_until(pc, lambda d: d.find_element(By.ID, "phone-url").text not in ("", url), "the PC's new session")
    state = wait_dialog(phone, JA["invalid"], "the phone told the session is invalid", timeout=POLL_SECONDS + WAIT)
    assert state["confirm"] is False and state["modal"] is True
    for element_id in ("name", "phone", "submit"):
        assert not phone.find_element(By.ID, element_id).is_enabled(), f"#{element_id} is still enabled"
    shot(phone, "phone-after-pc-new-session")
    # Whatever the page does, the server refuses a submission to the ended session.
    session_id = re.search(r"[?&]session=([A-Za-z0-9_-]+)", url).group(1)
    answer = phone.execute_script(
        "return fetch('/api/submit', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify("
        "{sessionId: arguments[0], name: 'x', phone: '0901234567'})}).then(r => r.status)", session_id)
    assert answer == 404


def test_invalid_session_on_load_cannot_be_dismissed(server: Node, browsers: Any) -> None:
    phone = browsers("phone")
    for query in ("?session=s_00000000000000000000000000000000", "?session=bad%20id!", ""):
        phone.get(f"{server.base_url}/phone.html{query}")
        state = wait_dialog(phone, JA["invalid"], f"the invalid-session dialog for {query!r}")
        assert state["modal"] is True and state["kind"] == "error"
        assert state["confirm"] is False, "an invalid session's dialog has no button"
        assert not phone.find_element(By.ID, "info-form").is_displayed()
        press_escape(phone)
        assert dialog(phone)["open"] is True, "Escape dismissed the invalid-session dialog"
        assert not phone.find_element(By.ID, "info-form").is_displayed()
    shot(phone, "phone-invalid-session")

    english = browsers("phone", "en-US")
    english.get(f"{server.base_url}/phone.html?session=s_missing")
    wait_dialog(english, EN_INVALID, "the English invalid-session dialog")
    assert english.execute_script("return document.documentElement.lang") == "en"
    shot(english, "phone-invalid-session-en")


def test_expiry_while_filling_and_the_pc_renewing(short_server: Node, browsers: Any) -> None:
    pc = browsers("pc")
    phone = browsers("phone")

    created = time.monotonic()
    url = open_pc(pc, short_server)
    open_phone(phone, url)
    wait_status(pc, "connected", JA["connected"])
    phone.find_element(By.ID, "name").send_keys("山田")
    wait_status(pc, "input-started", JA["input-started"])
    shot(phone, "phone-before-expiry")

    # Error case 2: found by the 5 s poll, so within TTL + 5 s (plus slack for the machine).
    deadline = created + SHORT_TTL_SECONDS + POLL_SECONDS + EXPIRY_SLACK
    state = wait_dialog(phone, JA["expired"], "the session-expired dialog", timeout=max(1.0, deadline - time.monotonic()))
    assert time.monotonic() >= created + SHORT_TTL_SECONDS - 1, "expiry reported before the session's TTL"
    assert state["confirm"] is False and state["modal"] is True
    shot(phone, "phone-expired")
    press_escape(phone)
    assert dialog(phone)["open"] is True, "Escape dismissed the session-expired dialog"
    for element_id in ("name", "phone", "submit"):
        assert not phone.find_element(By.ID, element_id).is_enabled(), f"#{element_id} is still enabled"

    # The PC noticed too and made a new session with a new QR code by itself.
    wait_until(pc, lambda d: d.find_element(By.ID, "phone-url").text not in ("", url), "the PC's new session")
    wait_status(pc, "waiting", JA["waiting"])
    new_url = decode_qr(pc, "pc-renewed-qr")
    assert new_url != url and new_url == pc.find_element(By.ID, "phone-url").text

    # Error case 1 as the article tells it: the old QR code after the PC's screen was refreshed.
    late = browsers("phone")
    late.get(url)
    state = wait_dialog(late, JA["invalid"], "the invalid-session dialog for the old QR URL")
    assert state["confirm"] is False
    assert not late.find_element(By.ID, "info-form").is_displayed()
    shot(late, "phone-old-qr-invalid")
