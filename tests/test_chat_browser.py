"""The chat page of `litgpt serve --openai_spec true`, end to end in headless Chromium (Debian's `chromium` driven by
Selenium through the system `chromedriver`): a message is typed, and the reply streams into the page.

The server is real (a subprocess on a free 127.0.0.1 port) around the tiny random model of `test_serve.py`; the reply
must be exactly what `LLM.generate` gives greedily. Screenshots are kept in `test-artifacts/`, also when a test fails.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from tests.serve_helpers import Server, make_tiny_checkpoint

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(
        f"needs Debian's Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver",
        allow_module_level=True,
    )
pytest.importorskip("selenium")
pytest.importorskip("requests")
pytest.importorskip("litserve")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
API_KEY = "browser-key-456"
MESSAGE = "What food do llamas eat?"
MAX_TOKENS = 12
TIMEOUT = 120  # seconds for any one wait: a busy CI machine runs the model, the server and the browser on few cores
# A closed network: nothing in the background may try to reach out (refused connections stall Chromium otherwise).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,700",
)

# Records every text the newest assistant bubble shows: the page appends each streamed delta with
# `reply.textContent += ...`, which swaps in a new text node, so each added node is one state of the reply.
RECORD_REPLY_STATES = """
window.replyStates = [];
new MutationObserver((records) => {
  for (const record of records) {
    if (!record.target.classList || !record.target.classList.contains("assistant")) continue;
    for (const node of record.addedNodes) {
      if (node.nodeType === Node.TEXT_NODE) window.replyStates.push(node.nodeValue);
    }
  }
}).observe(document.getElementById("log"), { childList: true, subtree: true });
"""
# The reply's own text, without the "N tokens in S s" line appended to the bubble at the end.
LAST_REPLY_TEXT = """
const replies = document.querySelectorAll("#log .msg.assistant");
const reply = replies[replies.length - 1];
return Array.from(reply.childNodes).filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.nodeValue).join("");
"""


@pytest.fixture(scope="module")
def tiny_checkpoint(smollm2_hf_dir, tmp_path_factory) -> Path:
    return make_tiny_checkpoint(smollm2_hf_dir, tmp_path_factory.mktemp("browser-tiny"))


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory, request):
    logs = tmp_path_factory.mktemp("browser-serve-logs")
    server = Server(
        tiny_checkpoint, logs / "openai.log", "--openai_spec", "true", "--api_key", API_KEY, "--temperature", "0",
        "--max_new_tokens", "8",
    )  # fmt: skip
    try:
        request.getfixturevalue("expected_reply")  # load the reference model while the server starts
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def expected_reply(tiny_checkpoint) -> str:
    from litgpt.api import LLM

    llm = LLM.load(tiny_checkpoint)
    return llm.generate([{"role": "user", "content": MESSAGE}], temperature=0, max_new_tokens=MAX_TOKENS)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    home = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={home / 'profile'}")  # a fresh profile
    # the driver's path is given, so Selenium Manager never runs (it would try to download a driver)
    service = Service(CHROMEDRIVER, log_output=str(home / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, server):
    """The chat page, freshly loaded, with no API key remembered from an earlier test."""
    browser.get(server.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(server.url + "/")
    wait(browser).until(lambda d: d.find_element(By.ID, "model").text not in ("", "connecting…"))
    return browser


def wait(driver) -> WebDriverWait:
    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.1)


def screenshot(driver, name: str) -> None:
    """Kept as a test artifact, also after a failure (whose error it must not hide should the browser be gone)."""
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        driver.save_screenshot(str(ARTIFACTS / name))
    except WebDriverException as e:
        warnings.warn(f"no screenshot {name}: {e.msg}", stacklevel=2)


def enter_api_key(driver, key: str) -> None:
    field = driver.find_element(By.ID, "api_key")
    field.clear()
    field.send_keys(key, Keys.TAB)  # leaving the field fires its change event: the page stores the key
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "model"), "tiny-serve-test"))


def set_number(driver, field_id: str, value: int | float) -> None:
    field = driver.find_element(By.ID, field_id)
    field.clear()
    field.send_keys(str(value))
    assert field.get_attribute("value") == str(value)


def send_message(driver, text: str) -> None:
    box = driver.find_element(By.ID, "input")
    box.send_keys(text, Keys.ENTER)  # Enter sends


def wait_for_reply_done(driver) -> None:
    """The reply is complete once its "N tokens in S s" line is appended and the Stop button reads Send again."""
    wait(driver).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "#log .msg.assistant .meta")
            and d.find_element(By.ID, "send").text == "Send"
        )
    )


def test_typed_message_gets_a_streamed_reply(page, expected_reply):
    try:
        enter_api_key(page, API_KEY)
        set_number(page, "temperature", 0)
        set_number(page, "max_tokens", MAX_TOKENS)
        page.execute_script(RECORD_REPLY_STATES)
        send_message(page, MESSAGE)

        user = wait(page).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#log .msg.user")))
        assert user.text == MESSAGE
        assert page.find_element(By.ID, "input").get_attribute("value") == ""
        wait_for_reply_done(page)

        assert not page.find_elements(By.CSS_SELECTOR, "#log .msg.error")
        reply = page.execute_script(LAST_REPLY_TEXT)
        assert reply.strip(), "the assistant's reply is empty"
        assert reply == expected_reply  # greedy: the very text the model gives for this message
        # streamed: the reply grew piece by piece, each state extending the one before
        states = page.execute_script("return window.replyStates")
        assert len(states) > 1, states
        assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(states, states[1:])), states
        assert states[-1] == reply
        meta = page.find_element(By.CSS_SELECTOR, "#log .msg.assistant .meta").text
        match = re.fullmatch(r"(\d+) tokens in \d+\.\d s( \(stopped at max tokens\))?", meta)
        assert match, meta
        assert len(states) <= int(match[1]) <= MAX_TOKENS
    finally:
        screenshot(page, "chat_page.png")


def test_api_key_is_asked_for_and_remembered(page, server):
    try:
        # without a key the model list is refused, and so is a message
        assert "API key" in page.find_element(By.ID, "model").text
        send_message(page, "Hello there")
        error = wait(page).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#log .msg.error")))
        assert error.text.startswith("Error: Missing or wrong API key"), error.text
        wait(page).until(lambda d: d.find_element(By.ID, "send").text == "Send")
        assert page.execute_script("return history.length") == 0  # the refused turn is not sent again

        enter_api_key(page, API_KEY)
        assert page.execute_script("return localStorage.getItem('litgpt_api_key')") == API_KEY
        # the key survives a reload, and now a message gets its reply
        page.get(server.url + "/")
        wait(page).until(EC.text_to_be_present_in_element((By.ID, "model"), "tiny-serve-test"))
        assert page.find_element(By.ID, "api_key").get_attribute("value") == API_KEY
        set_number(page, "temperature", 0)
        set_number(page, "max_tokens", 4)
        send_message(page, "Hello there")
        wait_for_reply_done(page)
        assert not page.find_elements(By.CSS_SELECTOR, "#log .msg.error")
        assert page.execute_script(LAST_REPLY_TEXT).strip()
    finally:
        screenshot(page, "chat_page_api_key.png")
