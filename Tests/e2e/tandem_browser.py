"""What the two browser tests share (test_browser.py, test_browser_resume.py): headless Chromium driven by Debian's
chromedriver, screenshots, bounded waits and what the PC page shows. Kept apart from the tandem_e2e package so that
only the browser tests import Selenium."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tandem_e2e.nodes import REPO_ROOT, Cluster, Node

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
WAIT = 10.0  # one step of the UI (an SSE event, a dialog) must show within this

# The article's words (Japanese is the default language of both pages for a ja browser).
JA = {
    "waiting": "サブデバイスの接続を待っています...",
    "connected": "サブデバイスで接続中...",
    "input-started": "サブデバイスで入力中...",
    "phone_away": "サブデバイスが戻るのを待っています...",
    "completed": "サブデバイスで入力完了",
    "complete_title": "サブデバイスでの入力が完了しました",
    "invalid": "このセッションは無効です。メインデバイスのQRコード画面が更新された可能性があります。",
    "expired": "セッションの有効期限が切れました。メインデバイスのQRコード画面を更新して、再度QRコードをスキャンしてください。",
    "network": "ネットワークエラーが発生しました。もう一度お試しください。",
    "already_submitted": "このセッションは既に送信済みです",
    "session_completed": "このセッションは既に送信済みです。",
    "control_characters": "使用できない文字が含まれています",
    "submitted": "送信が完了しました",
    "name_too_long": "お名前は20文字以内で入力してください",
}


# --------------------------------------------------------------------------------------------------------------
# Chromium


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        pytest.fail(f"`{name}` is missing: apt-get install {package} (scripts/test.sh does)")
    return path


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.fail("Chromium is missing: apt-get install chromium chromium-driver (scripts/test.sh does)")


def chrome_options(language: str = "ja", desktop: bool = True) -> webdriver.ChromeOptions:
    """Headless Chromium in `language`; a desktop-sized window unless the caller emulates a phone."""
    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root (CI does); Chromium refuses its sandbox there
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--lang={language}",
    ):
        options.add_argument(argument)
    if desktop:
        options.add_argument("--window-size=1280,960")
    # navigator.language, which picks the pages' language, follows this preference in headless Chromium.
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    return options


def start_chrome(options: webdriver.ChromeOptions) -> WebDriver:
    """A browser with page-load and script timeouts. The driver is Debian's, found on PATH: Selenium Manager must
    not try to download one."""
    driver = webdriver.Chrome(options=options, service=Service(executable_path=tool("chromedriver", "chromium-driver")))
    try:
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(10)
    except BaseException:
        quit_quietly(driver)
        raise
    return driver


def quit_quietly(driver: WebDriver) -> None:
    try:
        driver.quit()
    except Exception:  # noqa: BLE001 - a browser that is already gone is fine
        pass


def open_browser(kind: str, language: str = "ja") -> WebDriver:
    """A desktop-sized browser (`pc`) or one with a phone's screen, touch and user agent (`phone`)."""
    options = chrome_options(language, desktop=kind != "phone")
    if kind == "phone":
        options.add_experimental_option(
            "mobileEmulation",
            {
                "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0, "touch": True, "mobile": True},
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/130.0 Mobile Safari/537.36",
            },
        )
    return start_chrome(options)


@pytest.fixture
def browsers() -> Iterator[Callable[..., WebDriver]]:
    """Opens browsers on demand (`browsers("phone", "en-US")`); every one is quit at the end of the test."""
    opened: list[WebDriver] = []

    def open_one(kind: str, language: str = "ja") -> WebDriver:
        driver = open_browser(kind, language)
        opened.append(driver)
        return driver

    try:
        yield open_one
    finally:
        for driver in opened:
            quit_quietly(driver)


def serve_pages(ttl_seconds: int | None = None, stop_timeout: float = 5.0, extra: Mapping[str, str] | None = None) -> Iterator[Node]:
    """One node serving the pages, its public URL its own port, with an optional session TTL and `extra` settings
    (environment variables); stopped after."""
    def settings(port: int) -> dict[str, str]:
        values = {"PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **(extra or {})}
        if ttl_seconds is not None:
            values["SESSION_TTL_SECONDS"] = str(ttl_seconds)
        return values

    with Cluster(stop_timeout=stop_timeout) as cluster:
        yield cluster.tandem("tandem", settings)


# --------------------------------------------------------------------------------------------------------------
# Steps on a page


class Pages:
    """Screenshots numbered in order as test-artifacts/browser/<prefix>NN-name.png, and bounded waits that take one
    when they time out; `details(driver)` is added to the message of a timeout."""

    def __init__(self, prefix: str = "", details: Callable[[WebDriver], str] | None = None) -> None:
        self.prefix = prefix
        self.details = details
        self._numbers = itertools.count(1)

    def shot(self, driver: WebDriver, name: str) -> Path:
        """Saves a screenshot of the page as test-artifacts/browser/<prefix>NN-name.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.prefix}{next(self._numbers):02d}-{name}.png"
        driver.save_screenshot(str(path))
        return path

    def decode_qr(self, driver: WebDriver, name: str) -> str:
        """Screenshots the page and decodes the one QR code in it with zbarimg."""
        path = self.shot(driver, name)
        zbarimg = tool("zbarimg", "zbar-tools")
        result = subprocess.run([zbarimg, "--raw", "-q", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"zbarimg found no QR code in {path}: {result.stderr}"
        codes = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(codes) == 1, f"expected one QR code in {path}, found {codes}"
        return codes[0]

    def wait_until(self, driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT) -> Any:
        try:
            # A live page re-renders while a condition reads it (the ops table every second): an element gone
            # between finding and reading it means "look again", not a failure.
            return WebDriverWait(
                driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            self.shot(driver, "timeout-" + re.sub(r"[^a-z0-9]+", "-", what.lower())[:40])
            details = self.details(driver) if self.details is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}{details}") from None

    def wait_status(self, driver: WebDriver, state: str, text: str, timeout: float = WAIT) -> None:
        self.wait_until(driver, lambda d: pc_status(d) == (state, text), f"PC status {state!r}", timeout)

    def open_phone(self, driver: WebDriver, url: str) -> None:
        """Opens the phone page at `url` and waits for its form."""
        driver.get(url)
        self.wait_until(driver, lambda d: d.find_element(By.ID, "info-form").is_displayed(), "the phone's form")


def press_escape(driver: WebDriver) -> None:
    """Escape twice, with a pause: Chromium lets a second Escape close even a dialog whose `cancel` is prevented,
    so a dialog that survives this cannot be dismissed from the keyboard."""
    for _ in range(2):
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        time.sleep(0.3)


def fill(driver: WebDriver, name: str, phone: str) -> None:
    """Types a name and a phone number into the phone page's fields, replacing what they held."""
    for field, value in (("name", name), ("phone", phone)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


def pc_status(driver: WebDriver) -> tuple[str, str]:
    state, text = driver.execute_script(
        "return [document.getElementById('status').dataset.state, document.getElementById('status-text').textContent]"
    )
    return state, text


def qr_loaded(driver: WebDriver) -> bool:
    return driver.execute_script("const q = document.getElementById('qr'); return q.complete && q.naturalWidth > 0")


def dialog(driver: WebDriver) -> dict[str, Any]:
    """What the page's <dialog> shows: open or not, its texts, whether it has a visible OK button."""
    return driver.execute_script(
        """
        const d = document.getElementById('dialog');
        const confirm = d.querySelector('.dialog-confirm');
        return {
          open: d.open,
          modal: d.matches(':modal'),
          kind: d.dataset.kind || '',
          title: d.querySelector('.dialog-title').textContent,
          text: d.querySelector('.dialog-body').textContent.trim(),
          confirm: !confirm.hidden && confirm.offsetParent !== null,
        };
        """
    )
