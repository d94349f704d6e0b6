"""A form of the site's own (`form.fields`, issue 19) in real headless Chromium, PC and phone side by side: a name, an
e-mail, a plan to choose, a one-time code and a consent box.

Runs on one node with the in-memory broker, and on two nodes sharing one `redis-server` (the PC on node A, the phone
on node B). What is checked:
- the phone page builds the five fields from GET /api/form, labelled in Japanese, and in English after the switch;
- sending it empty shows each required field's error under it (linked to its control) and focuses the first;
- a one-time code that does not match the pattern is refused by the server with the field's label in its words;
- axe-core finds nothing serious on the built form, its errors, the refusal dialog and the PC's result dialog;
- a good submission: the phone shows success, the PC shows every field in the form's order with its label, and the
  stream's `complete` event carries exactly the fields (checked with httpx on a resumed stream: the `resync`).

Needs what test_pairing_browser.py needs. Screenshots go to test-artifacts/browser/form-*.png.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tandem_browser import JA, Pages, browsers, dialog, qr_loaded  # noqa: F401 (browsers: a fixture)
from tandem_e2e.nodes import REQUEST_TIMEOUT, Cluster, Node
from test_accessibility import Audit

FIELDS = [
    {"name": "fullName", "type": "text", "label": {"ja": "氏名", "en": "Full name"}, "required": True, "maxLength": 30},
    {"name": "email", "type": "email", "label": {"ja": "メールアドレス", "en": "E-mail"}, "required": True},
    {"name": "plan", "type": "select", "label": {"ja": "プラン", "en": "Plan"}, "required": True,
     "options": [{"value": "basic", "label": {"ja": "ベーシック", "en": "Basic"}}, {"value": "pro", "label": {"ja": "プロ", "en": "Pro"}}]},
    {"name": "otp", "type": "text", "label": {"ja": "確認コード", "en": "One-time code"}, "pattern": "[0-9]{6}"},
    {"name": "agree", "type": "checkbox", "label": {"ja": "規約に同意する", "en": "I agree to the terms"}, "required": True},
]
SETTINGS = {"FORM_FIELDS": json.dumps(FIELDS, ensure_ascii=False), "HEARTBEAT_SECONDS": "2"}
PHONE_URL = re.compile(r"http://127\.0\.0\.1:\d+/phone\.html\?session=(?P<id>s_[A-Za-z0-9_-]+)&t=\S+")

pages = Pages("form-")
shot, wait_until, wait_status = pages.shot, pages.wait_until, pages.wait_status


@pytest.fixture(scope="module", params=["memory", "redis"])
def nodes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    with Cluster(tmp_path_factory.mktemp(f"form-{request.param}")) as cluster:
        if request.param == "memory":
            node = cluster.tandem("tandem", lambda port: {**SETTINGS, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
            yield node, node
            return
        shared = {**SETTINGS, "BROKER": "redis", "REDIS_URL": cluster.redis().url}
        a = cluster.tandem("A", lambda port: {**shared, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
        b = cluster.tandem("B", {**shared, "PUBLIC_BASE_URL": a.base_url})
        yield a, b


def label_of(driver: WebDriver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"label[for='field-{name}']").text.strip()


def error_of(driver: WebDriver, name: str) -> str:
    element = driver.find_element(By.ID, f"field-{name}-error")
    return element.text.strip() if element.is_displayed() else ""


def test_a_five_field_form_goes_from_phone_to_pc(nodes: tuple[Node, Node], browsers) -> None:  # noqa: F811
    pc_node, phone_node = nodes
    pc = browsers("pc")
    phone = browsers("phone")
    pc.get(pc_node.base_url + "/")
    wait_until(pc, qr_loaded, "the QR image")
    url = pc.find_element(By.ID, "phone-url").get_attribute("textContent")
    match = PHONE_URL.fullmatch(url)
    assert match, url
    session_id = match["id"]
    phone.get(phone_node.base_url + url[len(pc_node.base_url):])
    wait_until(phone, lambda d: d.find_element(By.ID, "info-form").is_displayed(), "the phone's form")
    wait_until(phone, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#info-form .field")) == 5, "the five fields")
    shot(phone, "built")
    audit = Audit("ja")
    audit(phone, "form-phone", f"built-{pc_node.name}")

    # Built from the configuration, in its order, labelled in the page's language; required ones marked.
    names = [element.get_attribute("name") for element in phone.find_elements(By.CSS_SELECTOR, "#info-form input, #info-form select")]
    assert names == ["fullName", "email", "plan", "otp", "agree"], names
    assert [label_of(phone, field["name"]) for field in FIELDS] == ["氏名 *", "メールアドレス *", "プラン *", "確認コード", "規約に同意する *"]
    assert phone.find_element(By.ID, "field-email").get_attribute("type") == "email"
    assert phone.find_element(By.ID, "field-agree").get_attribute("type") == "checkbox"
    assert [o.text for o in Select(phone.find_element(By.ID, "field-plan")).options] == ["選択してください", "ベーシック", "プロ"]
    assert phone.find_element(By.ID, "field-fullName").get_attribute("aria-describedby") == "field-fullName-error field-fullName-count"
    # The article's lead names its two fields; a configured form gets the general one.
    assert phone.find_element(By.CSS_SELECTOR, "#info-form .lead").text == "フォームに入力して送信してください。"

    # Sent empty: each required field says so under itself, and the first takes the focus.
    phone.find_element(By.ID, "submit").click()
    wait_until(phone, lambda d: error_of(d, "agree") != "", "the required fields' errors")
    assert error_of(phone, "fullName") == "「氏名」を入力してください"
    assert error_of(phone, "plan") == "「プラン」を選んでください"
    assert error_of(phone, "agree") == "「規約に同意する」にチェックを入れてください"
    assert error_of(phone, "otp") == ""
    assert phone.switch_to.active_element.get_attribute("id") == "field-fullName"
    assert phone.find_element(By.ID, "field-agree").get_attribute("aria-invalid") == "true"
    audit(phone, "form-phone", f"required-errors-{pc_node.name}")

    # Typing starts: the PC hears input-started.
    phone.find_element(By.ID, "field-fullName").send_keys("山田 太郎")
    wait_status(pc, "input-started", JA["input-started"])
    phone.find_element(By.ID, "field-email").send_keys("Taro@Example.com")
    Select(phone.find_element(By.ID, "field-plan")).select_by_value("pro")
    phone.find_element(By.ID, "field-otp").send_keys("12345")
    phone.find_element(By.ID, "field-agree").click()
    # A code that does not match the pattern: the server refuses it with the field's label, shown under the field.
    phone.find_element(By.ID, "submit").click()
    wait_until(phone, lambda d: dialog(d)["open"], "the refusal")
    assert dialog(phone)["text"] == "「確認コード」の形式が正しくありません", dialog(phone)
    assert error_of(phone, "otp") == "「確認コード」の形式が正しくありません"
    shot(phone, "refused")
    audit(phone, "form-phone", f"refused-dialog-{pc_node.name}")
    phone.find_element(By.CSS_SELECTOR, "#dialog .dialog-confirm").click()

    # The language switch relabels the form.
    phone.find_element(By.CSS_SELECTOR, ".card-head .lang-button[data-lang='en']").click()
    wait_until(phone, lambda d: label_of(d, "otp") == "One-time code", "the English labels")
    assert label_of(phone, "agree") == "I agree to the terms *"
    phone.find_element(By.CSS_SELECTOR, ".card-head .lang-button[data-lang='ja']").click()

    phone.find_element(By.ID, "field-otp").send_keys("6")
    phone.find_element(By.ID, "submit").click()
    wait_until(phone, lambda d: d.find_element(By.ID, "done").is_displayed(), "the phone's success")
    shot(phone, "sent")

    # The PC shows every field, in the form's order, with its label.
    wait_status(pc, "completed", JA["completed"])
    wait_until(pc, lambda d: dialog(d)["open"], "the PC's result")
    lines = [element.text for element in pc.find_elements(By.CSS_SELECTOR, "#dialog .result-line")]
    shot(pc, "result")
    audit(pc, "form-pc", f"result-dialog-{pc_node.name}")
    assert lines == ["氏名: 山田 太郎", "メールアドレス: Taro@example.com", "プラン: プロ", "確認コード: 123456", "規約に同意する: はい"], lines

    # What the stream carries (its resync, read with httpx with the PC's reader key): exactly the fields.
    # The reader key is HttpOnly with Path=/api: read from the browser's store, not the page.
    cookies = {cookie["name"]: cookie["value"] for cookie in pc.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}
    with httpx.Client(base_url=pc_node.base_url, timeout=REQUEST_TIMEOUT, cookies=cookies) as client:
        with client.stream("GET", f"/api/events?session={session_id}", headers={"Last-Event-ID": "999"}) as response:
            assert response.status_code == 200
            text = ""
            for chunk in response.iter_text():
                text += chunk
                if "event: resync" in text and "\n\n" in text.split("event: resync", 1)[1]:
                    break
    resync = json.loads(re.search(r"event: resync\nid: \d+\ndata: (.*)\n", text)[1])
    assert {key: resync[key] for key in ("fullName", "email", "plan", "otp", "agree")} == {
        "fullName": "山田 太郎", "email": "Taro@example.com", "plan": "pro", "otp": "123456", "agree": True}
    assert "name" not in resync and "phone" not in resync
    audit.check()


def test_the_form_is_served_and_an_unknown_field_is_refused(nodes: tuple[Node, Node]) -> None:
    pc_node, phone_node = nodes
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        form = client.get(phone_node.base_url + "/api/form").json()
        assert [field["name"] for field in form["fields"]] == [field["name"] for field in FIELDS]
        assert form["fields"][2]["options"][1] == {"value": "pro", "label": {"ja": "プロ", "en": "Pro"}}
        # The article's body to a configured form: refused field by field before any session is looked up.
        refused = client.post(phone_node.base_url + "/api/submit", json={"sessionId": "s_nosuchsession1234", "name": "A", "phone": "0123"},
                              headers={"Accept-Language": "en"})
        assert refused.status_code == 400
        errors = [(error["path"], error["code"]) for error in refused.json()["errors"]]
        assert errors == [("fullName", "field_required"), ("email", "field_required"), ("plan", "field_required"),
                          ("agree", "field_must_be_checked"), ("name", "field_unknown"), ("phone", "field_unknown")], errors
        assert refused.json()["errors"][0]["msg"] == "Please enter Full name."


RENAMED = [
    {"name": "name", "type": "text", "label": {"ja": "氏名（漢字）", "en": "Full legal name"}, "required": True, "maxLength": 20},
    {"name": "phone", "type": "tel", "label": {"ja": "携帯番号", "en": "Mobile"}, "required": False, "maxLength": 15},
]


def test_the_articles_two_names_with_other_labels_and_rules_are_a_form_of_their_own(browsers, tmp_path) -> None:  # noqa: F811
    """A configured form that keeps the article's field names but not its labels or rules is built from its definition
    on the phone (its labels, its optional phone) and shown with its labels on the PC."""
    settings = {"FORM_FIELDS": json.dumps(RENAMED, ensure_ascii=False)}
    with Cluster(tmp_path) as cluster:
        node = cluster.tandem("tandem", lambda port: {**settings, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
        pc = browsers("pc")
        phone = browsers("phone")
        pc.get(node.base_url + "/")
        wait_until(pc, qr_loaded, "the QR image")
        phone.get(pc.find_element(By.ID, "phone-url").get_attribute("textContent"))
        wait_until(phone, lambda d: d.find_element(By.ID, "info-form").is_displayed(), "the phone's form")
        wait_until(phone, lambda d: len(d.find_elements(By.ID, "field-name")) == 1, "the configured fields")
        assert [label_of(phone, "name"), label_of(phone, "phone")] == ["氏名（漢字） *", "携帯番号"]
        phone.find_element(By.ID, "field-name").send_keys("山田")
        phone.find_element(By.ID, "submit").click()  # the phone is optional here
        wait_until(phone, lambda d: d.find_element(By.ID, "done").is_displayed(), "the phone's success")
        wait_until(pc, lambda d: dialog(d)["open"], "the PC's result")
        lines = [element.text for element in pc.find_elements(By.CSS_SELECTOR, "#dialog .result-line")]
        assert lines == ["氏名（漢字）: 山田"], lines
