"""Accessibility of the PC page and the phone page, in real headless Chromium against the real `tandem` binary.

axe-core (shipped inside a Python package, so nothing is fetched: 4.12.1 from `axe-playwright-python` installed
with --no-deps, see requirements-axe.txt, else 3.1.1 from `axe-selenium-python`) audits both pages in every state,
in Japanese and in English: the PC waiting with its QR code, connected (with the pairing code and "not my phone"),
inputting, completed (with and without its result dialog), expired, and saying that the phone has disconnected; the
phone's form (with the pairing code), its field errors, and each of its dialogs (success, submit error, network
error, invalid session, session expired, already submitted, QR code already used by another device, QR code out of
date). Any violation of impact "serious" or "critical" fails the test;
"moderate" and "minor" ones are listed in the report. Every audit writes a screenshot (a PC-sized window and a
phone-sized one) and test-artifacts/browser/axe-report.json holds every finding.

The other tests check what axe cannot: the ja/en switch (visible on both pages and inside a locked dialog,
remembered on the device, applied to every text, `<html lang>` and the API's Accept-Language), the dialogs' names,
descriptions and focus, field errors tied to their inputs, and counters that are not live regions.

Set TANDEM_A11Y_REPORT_ONLY=1 to audit without failing (to measure pages from another PUBLIC_DIRECTORY), and
TANDEM_AXE_SCRIPT=/path/to/axe.min.js to use another axe-core.

Needs: Debian `chromium`, `chromium-driver`; `pip install -r Tests/e2e/requirements.txt`; a built binary at
$TANDEM_BINARY or .build/debug/tandem.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import importlib.util

import axe_selenium_python
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tandem_browser import ARTIFACTS, JA, WAIT, Pages, browsers, dialog, fill, pc_status, qr_loaded, serve_pages  # noqa: F401 (browsers: a fixture)
from tandem_e2e.nodes import Node
from tandem_e2e.phone import PHONE



def _axe_script() -> Path:
    """axe-core 4 when `axe-playwright-python` is installed (its package holds only the script and a Playwright
    wrapper that is never imported), else axe-core 3.1.1 from `axe-selenium-python`."""
    if chosen := os.environ.get("TANDEM_AXE_SCRIPT"):
        return Path(chosen)
    spec = importlib.util.find_spec("axe_playwright_python")
    if spec is not None and spec.origin is not None:
        newer = Path(spec.origin).parent / "axe.min.js"
        if newer.is_file():
            return newer
    print("axe-core 4 is missing (pip install --no-deps -r Tests/e2e/requirements-axe.txt): using axe-core 3.1.1")
    return Path(axe_selenium_python.__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"


AXE_SCRIPT = _axe_script()
FAILING_IMPACTS = {"serious", "critical"}
REPORT_ONLY = os.environ.get("TANDEM_A11Y_REPORT_ONLY") == "1"
SHORT_TTL_SECONDS = 4  # short enough that the PC's renewal waits (and shows "expired") for a while
GRACE_SECONDS = 3  # how long a phone's page may be gone before the PC says so, on `grace_server`

# What the pages say, in both languages (Japanese is the article's wording).
WORDS = {
    "ja": {
        **JA,
        # What only the server checks (a bidi override in the name): its error in a dialog that can be closed.
        "submit_error": "使用できない文字が含まれています",
        "session_completed": "このセッションは既に送信済みです。",
        "done_text": "メインデバイスの画面をご確認ください。",
        "claimed": "このQRコードは別の端末ですでに使われています。",
        "stale": "このQRコードは古くなっています。PCに表示されている最新のQRコードを読み取ってください。",
        "phone_left": "スマートフォンとの接続が切れました",
        "pairing_code": "確認コード",
        "not_my_phone": "自分のスマートフォンではない",
    },
    "en": {
        "waiting": "Waiting for the phone to connect...",
        "connected": "Phone connected...",
        "input-started": "Typing on the phone...",
        "completed": "Input on the phone complete",
        "complete_title": "Input on the phone is complete",
        "invalid": "This session is not valid. The QR code screen on the main device may have been refreshed.",
        "expired": "The session has expired. Refresh the QR code screen on the main device and scan the QR code again.",
        "network": "A network error occurred. Please try again.",
        "submitted": "Submitted",
        "submit_error": "The value contains characters that are not allowed.",
        "session_completed": "This session has already been submitted.",
        "done_text": "Have a look at the main device.",
        "name_too_long": "Your name must be at most 20 characters",
        "claimed": "This QR code has already been used on another device.",
        "stale": "This QR code is out of date. Scan the code the PC shows now.",
        "phone_left": "The phone has disconnected",
        "pairing_code": "Pairing code",
        "not_my_phone": "Not my phone",
    },
}


# --------------------------------------------------------------------------------------------------------------
# Servers and browsers


@pytest.fixture(scope="module")
def server() -> Iterator[Node]:
    yield from serve_pages(None)


@pytest.fixture(scope="module")
def short_server() -> Iterator[Node]:
    yield from serve_pages(SHORT_TTL_SECONDS)


@pytest.fixture(scope="module")
def grace_server() -> Iterator[Node]:
    """A node with a short grace (the SSE retry must be a second shorter), so the PC soon says the phone left."""
    yield from serve_pages(None, extra={"PAIRING_GRACE_SECONDS": str(GRACE_SECONDS), "SSE_RETRY_MILLISECONDS": "1000"})


pages = Pages(prefix="a11y-")
shot, wait_until, wait_status, open_form = pages.shot, pages.wait_until, pages.wait_status, pages.open_phone


# --------------------------------------------------------------------------------------------------------------
# axe-core


class Audit:
    """Runs axe-core on a page and keeps every finding; `failures` are those of impact serious or critical."""

    report: dict[str, list[dict[str, Any]]] = {}

    def __init__(self, language: str) -> None:
        self.language = language
        self.failures: list[str] = []

    def __call__(self, driver: WebDriver, page: str, state: str) -> list[dict[str, Any]]:
        name = f"{self.language}-{page}-{state}"
        shot(driver, name)
        if not driver.execute_script("return typeof window.axe === 'object'"):
            # Through WebDriver, not a <script> element: the pages' CSP would rightly refuse an inline one.
            driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
        result = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
              .then((r) => done(r.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
              }))))
              .catch((e) => done({ error: String(e) }));
            """
        )
        assert not isinstance(result, dict), f"axe-core failed on {name}: {result}"
        result += own_checks(driver)
        Audit.report[name] = result
        for violation in result:
            line = f"{name}: [{violation['impact']}] {violation['id']}: {violation['help']} at " + ", ".join(
                node["target"] for node in violation["nodes"]
            )
            print(line)
            if violation["impact"] in FAILING_IMPACTS:
                self.failures.append(line + "\n    " + "\n    ".join(str(n["summary"]) for n in violation["nodes"]))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "axe-report.json").write_text(json.dumps(Audit.report, ensure_ascii=False, indent=1), encoding="utf-8")
        return result

    def check(self) -> None:
        if REPORT_ONLY:
            return
        assert self.failures == [], "axe-core found serious or critical violations:\n" + "\n".join(self.failures)


def own_checks(driver: WebDriver) -> list[dict[str, Any]]:
    """What axe-core does not check, in axe's shape: visible text below 14 px, and placeholder contrast below
    4.5:1 (against the input's background composited over the page's lightest and darkest background)."""
    return driver.execute_script(
        r"""
        const found = [];
        const small = [];
        for (const element of document.querySelectorAll('body *')) {
          const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '');
          if (!own || element.checkVisibility?.() === false || element.closest('.visually-hidden')) continue;
          if (element.closest('dialog') && !element.closest('dialog').open) continue;
          const size = parseFloat(getComputedStyle(element).fontSize);
          if (size < 14) small.push({ target: element.id ? '#' + element.id : element.className || element.tagName, summary: size + 'px' });
        }
        if (small.length > 0) found.push({ id: 'tandem-min-font-size', impact: 'serious', help: 'Text is at least 14 px', nodes: small });
        const rgba = (text) => { const v = text.match(/[\d.]+/g).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
        const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
        const lum = (c) => { const l = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
          return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]; };
        const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
        const low = [];
        for (const input of document.querySelectorAll('input[placeholder]')) {
          if (input.placeholder === '' || input.checkVisibility?.() === false) continue;
          const layers = [];
          for (let e = input; e && e !== document.documentElement; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c[3] > 0) layers.push(c);
            if (c[3] === 1) break;
          }
          const worst = Math.min(...[[11, 34, 150, 1], [2, 10, 54, 1]].map((page) => {
            const background = layers.reduceRight((below, layer) => over(layer, below), page);
            const placeholder = rgba(getComputedStyle(input, '::placeholder').color);
            return ratio(over(placeholder, background), background);
          }));
          if (worst < 4.5) low.push({ target: '#' + input.id, summary: worst.toFixed(2) + ':1' });
        }
        if (low.length > 0) found.push({ id: 'tandem-placeholder-contrast', impact: 'serious', help: 'Placeholders have 4.5:1 contrast', nodes: low });
        return found;
        """
    )


# --------------------------------------------------------------------------------------------------------------
# Steps


def wait_dialog(driver: WebDriver, text: str, what: str, timeout: float = WAIT) -> dict[str, Any]:
    return wait_until(driver, lambda d: (state := dialog(d))["open"] and state["text"] == text and state, what, timeout)




def close_dialog(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, "#dialog .dialog-confirm").click()
    wait_until(driver, lambda d: not dialog(d)["open"], "the dialog closing")


def active_element(driver: WebDriver) -> str:
    return driver.execute_script("const a = document.activeElement; return a.id || a.className || a.tagName")


def dialog_name_and_description(driver: WebDriver) -> tuple[str, str]:
    """The dialog's accessible name and description, as its aria-labelledby and aria-describedby give them."""
    return tuple(
        driver.execute_script(
            """
            const d = document.getElementById('dialog');
            const text = (ids) => (ids || '').split(/\\s+/).filter(Boolean)
              .map((id) => document.getElementById(id)?.textContent.trim() ?? '').join(' ');
            return [text(d.getAttribute('aria-labelledby')), text(d.getAttribute('aria-describedby'))];
            """
        )
    )


def shows_pairing_code(driver: WebDriver) -> bool:
    return driver.find_element(By.ID, "pairing").is_displayed() and driver.find_element(By.ID, "pairing-code").text != ""


def new_session(server: Node) -> str:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        response = client.post("/api/sessions")
        assert response.status_code == 201, response.text
        return str(response.json()["phoneUrl"])


# --------------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_state_of_both_pages_passes_axe(
    server: Node, short_server: Node, grace_server: Node, browsers: Any, language: str,
) -> None:
    words = WORDS[language]
    audit = Audit(language)
    pc = browsers("pc", language)
    phone = browsers("phone", language)

    pc.get(server.base_url + "/")
    wait_status(pc, "waiting", words["waiting"])
    wait_until(pc, qr_loaded, "QR image")
    audit(pc, "pc", "waiting")
    url = pc.find_element(By.ID, "phone-url").text

    open_form(phone, url)
    wait_until(phone, shows_pairing_code, "the phone's pairing code")
    code = phone.find_element(By.ID, "pairing-code").text
    assert phone.find_element(By.ID, "pairing").text.startswith(words["pairing_code"])
    audit(phone, "phone", "form-pairing-code")
    wait_status(pc, "connected", words["connected"])
    wait_until(pc, shows_pairing_code, "the PC's pairing code")
    assert pc.find_element(By.ID, "pairing-code").text == code
    assert pc.find_element(By.ID, "pairing").text.startswith(words["pairing_code"])
    assert pc.find_element(By.ID, "not-my-phone").text == words["not_my_phone"]
    audit(pc, "pc", "connected-pairing-code")

    # A second phone on the same QR code: the session is the first one's (409 already_claimed), a locked dialog.
    second = browsers("phone", language)
    second.get(url)
    wait_dialog(second, words["claimed"], "the already-claimed dialog")
    audit(second, "phone", "dialog-already-claimed")

    # What the page cannot check (a bidi override in the name): the server's error in a dialog that can be closed.
    fill(phone, "佐藤\u202e花子", "080-0000-0000")
    wait_status(pc, "input-started", words["input-started"])
    audit(pc, "pc", "inputting")
    phone.find_element(By.ID, "submit").click()
    wait_dialog(phone, words["submit_error"], "the server's error in a dialog")
    audit(phone, "phone", "dialog-submit-error")
    close_dialog(phone)

    fill(phone, "あ" * 21, "")
    phone.find_element(By.ID, "submit").click()
    wait_until(phone, lambda d: d.find_element(By.ID, "name-error").text == words["name_too_long"], "the field errors")
    audit(phone, "phone", "field-errors")

    fill(phone, "山田太郎", PHONE)
    phone.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        phone.find_element(By.ID, "submit").click()
        wait_dialog(phone, words["network"], "the network error dialog")
        audit(phone, "phone", "dialog-network-error")
        close_dialog(phone)
    finally:
        phone.delete_network_conditions()

    phone.find_element(By.ID, "submit").click()
    wait_dialog(phone, words["done_text"], "the success dialog")
    audit(phone, "phone", "dialog-success")
    close_dialog(phone)
    audit(phone, "phone", "done")

    wait_status(pc, "completed", words["completed"])
    wait_until(pc, lambda d: dialog(d)["open"], "the PC's result dialog")
    audit(pc, "pc", "completed-dialog")
    close_dialog(pc)
    audit(pc, "pc", "completed")

    # The phone that submitted opens its page again: already submitted.
    phone.get(phone.current_url)
    wait_dialog(phone, words["session_completed"], "the already-submitted dialog")
    audit(phone, "phone", "dialog-already-submitted")

    # An out-of-date QR code (its token was issued long ago: 410 qr_stale): a locked dialog, no form.
    stale = browsers("phone", language)
    stale.get(re.sub(r"&t=[^&]*", "&t=1.AAAAAAAAAAAAAAAAAAAAAA", new_session(server)))
    wait_dialog(stale, words["stale"], "the qr-stale dialog")
    audit(stale, "phone", "dialog-qr-stale")

    invalid = browsers("phone", language)
    invalid.get(server.base_url + "/phone.html?session=s_00000000000000000000000000000000")
    wait_dialog(invalid, words["invalid"], "the invalid-session dialog")
    audit(invalid, "phone", "dialog-invalid")

    # The phone's page goes away for longer than the grace: the PC says so.
    pc.get(grace_server.base_url + "/")
    wait_status(pc, "waiting", words["waiting"])
    first_tab = stale.current_window_handle
    stale.switch_to.new_window("tab")
    open_form(stale, pc.find_element(By.ID, "phone-url").text)
    wait_status(pc, "connected", words["connected"])
    stale.close()  # the phone's tab
    stale.switch_to.window(first_tab)
    wait_until(pc, lambda d: d.find_element(By.ID, "phone-left").text == words["phone_left"], "the PC's phone-left note",
               GRACE_SECONDS + 2 + WAIT)
    audit(pc, "pc", "phone-left")

    # Expiry: a session that lives 4 s. The PC shows "expired" while it waits to make a new one; the phone's
    # 5 s poll locks the form.
    expiring = browsers("phone", language)
    expiring.get(short_server.base_url + "/favicon.svg")  # the browser is up before the clock starts
    open_form(expiring, new_session(short_server))
    pc.get(short_server.base_url + "/")
    wait_until(pc, lambda d: pc_status(d)[0] == "expired", "the PC's expired state", SHORT_TTL_SECONDS + WAIT)
    audit(pc, "pc", "expired")
    wait_dialog(expiring, words["expired"], "the session-expired dialog", timeout=SHORT_TTL_SECONDS + 5 + WAIT)
    audit(expiring, "phone", "dialog-expired")

    audit.check()


def lang_button(driver: WebDriver, language: str, in_dialog: bool = False) -> Any:
    where = "#dialog .lang-switch" if in_dialog else ".card-head .lang-switch"
    return driver.find_element(By.CSS_SELECTOR, f"{where} [data-lang='{language}']")


def page_language(driver: WebDriver) -> str:
    return driver.execute_script("return document.documentElement.lang")


def test_language_switch_is_visible_remembered_and_translates_everything(server: Node, browsers: Any) -> None:
    en = WORDS["en"]
    # Japanese browsers: the default stays the browser's language; the switch overrides it.
    pc = browsers("pc", "ja")
    pc.get(server.base_url + "/")
    wait_status(pc, "waiting", JA["waiting"])
    assert page_language(pc) == "ja"
    switch = pc.find_element(By.CSS_SELECTOR, ".card-head .lang-switch")
    assert switch.is_displayed() and switch.get_attribute("aria-label")
    assert lang_button(pc, "ja").get_attribute("aria-pressed") == "true"
    lang_button(pc, "en").click()
    wait_status(pc, "waiting", en["waiting"])
    assert page_language(pc) == "en" and lang_button(pc, "en").get_attribute("aria-pressed") == "true"
    assert pc.title == "Tandem - cross-device handoff"
    assert pc.find_element(By.TAG_NAME, "h1").text == "Scan the QR code with your phone"
    assert pc.find_element(By.ID, "qr").get_attribute("alt") == "QR code of the page to open on the phone"
    pc.refresh()  # remembered on the device
    wait_status(pc, "waiting", en["waiting"])
    assert page_language(pc) == "en"
    shot(pc, "switch-pc-en")
    url = pc.find_element(By.ID, "phone-url").text

    phone = browsers("phone", "ja")
    open_form(phone, url)
    assert phone.find_element(By.CSS_SELECTOR, "label[for='name']").text == "お名前"
    lang_button(phone, "en").click()
    assert page_language(phone) == "en"
    assert phone.find_element(By.CSS_SELECTOR, "label[for='name']").text == "Name"
    assert phone.find_element(By.ID, "name").get_attribute("placeholder") == "Taro Yamada"
    assert phone.find_element(By.ID, "submit").text == "Submit"

    # Counters are not live regions; only reaching and passing the limit is announced.
    assert phone.execute_script(
        "return [...document.querySelectorAll('.counter')].every((c) => !c.closest('[aria-live], [role=status]'))"
    )
    announcer = phone.find_element(By.ID, "limit-announcer")
    assert announcer.get_attribute("aria-live") == "polite"
    name = phone.find_element(By.ID, "name")
    name.send_keys("あ" * 19)
    assert announcer.get_attribute("textContent") == ""
    name.send_keys("あ")
    assert announcer.get_attribute("textContent") == "Name: the limit of 20 characters is reached"
    name.send_keys("あ")
    assert announcer.get_attribute("textContent") == en["name_too_long"]

    # Field errors are tied to their inputs, and follow the language.
    assert "name-error" in name.get_attribute("aria-describedby").split()
    assert name.get_attribute("aria-invalid") == "true"
    assert phone.find_element(By.ID, "name-error").text == en["name_too_long"]
    lang_button(phone, "ja").click()
    assert phone.find_element(By.ID, "name-error").text == JA["name_too_long"]
    lang_button(phone, "en").click()
    shot(phone, "switch-phone-en-error")

    # The phone, in English by the switch on a Japanese browser: the API answers it in English.
    fill(phone, "佐藤\u202e花子", "080-0000-0000")
    phone.find_element(By.ID, "submit").click()
    wait_dialog(phone, en["submit_error"], "the server's error in English")
    assert dialog_name_and_description(phone) == ("Error", en["submit_error"])
    assert "dialog-confirm" in active_element(phone)
    close_dialog(phone)
    wait_until(phone, lambda d: active_element(d) in ("submit", "name"), "focus back on the form")

    # A second phone on the same QR code (a Japanese browser): the locked already-claimed dialog, named and described,
    # focus on its heading; its own switch translates it.
    second = browsers("phone", "ja")
    second.get(url)
    wait_dialog(second, WORDS["ja"]["claimed"], "the already-claimed dialog")
    assert dialog_name_and_description(second) == ("エラー", WORDS["ja"]["claimed"])
    assert active_element(second) == "dialog-title"
    lang_button(second, "en", in_dialog=True).click()
    wait_dialog(second, en["claimed"], "the already-claimed dialog in English")
    assert page_language(second) == "en" and dialog_name_and_description(second) == ("Error", en["claimed"])

    fill(phone, "山田太郎", PHONE)
    assert name.get_attribute("aria-invalid") == "false"
    phone.find_element(By.ID, "submit").click()
    wait_dialog(phone, en["done_text"], "the success dialog")
    # Named by its heading, described by its text, focus on its button; one term for submitting.
    assert dialog_name_and_description(phone) == (en["submitted"], en["done_text"])
    assert "dialog-confirm" in active_element(phone)
    assert phone.find_element(By.ID, "done-heading").get_attribute("textContent") == en["submitted"]
    close_dialog(phone)
    wait_until(phone, lambda d: active_element(d) == "done-heading", "focus on the confirmation's heading")

    wait_status(pc, "completed", en["completed"])
    wait_until(pc, lambda d: dialog(d)["open"], "the PC's result dialog")
    name_, description = dialog_name_and_description(pc)
    assert name_ == en["complete_title"] and "山田太郎" in description and PHONE in description
    assert "dialog-confirm" in active_element(pc)
    shot(pc, "switch-pc-result-en")
    close_dialog(pc)

    # The phone, opening its page again once the session is completed: locked, in its chosen language.
    phone.get(phone.current_url)
    wait_dialog(phone, en["session_completed"], "the already-submitted dialog in English")

    # A locked dialog: focus on its heading; its own switch translates it, and the choice is remembered.
    invalid = browsers("phone", "ja")
    invalid.get(server.base_url + "/phone.html?session=s_00000000000000000000000000000000")
    wait_dialog(invalid, JA["invalid"], "the invalid-session dialog")
    assert dialog_name_and_description(invalid) == ("エラー", JA["invalid"])
    assert active_element(invalid) == "dialog-title"
    lang_button(invalid, "en", in_dialog=True).click()
    wait_dialog(invalid, en["invalid"], "the invalid-session dialog in English")
    assert page_language(invalid) == "en" and dialog_name_and_description(invalid) == ("Error", en["invalid"])
    shot(invalid, "switch-phone-invalid-en")
    invalid.refresh()
    wait_dialog(invalid, en["invalid"], "the invalid-session dialog, still in English")
    assert page_language(invalid) == "en"
