"""The admin page in a real (headless) Chromium: key, add an account, create a license, see both."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.procs import Stack
from tests.store_backends import ADMIN_KEY, admin_stack, database_url, distinct_token

__all__ = ["admin_stack", "database_url"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="chromium and chromium-driver are not installed"
)


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cursorgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_admin_page(admin_stack: Stack, browser: object) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    # The page re-renders its tables after every action: an element found a moment ago may be
    # replaced before it is read, so a stale reference means "look again", not failure.
    wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(f"{admin_stack.root_url}/cursor/admin")
    assert browser.title == "cursorgate admin"
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Enter the admin key"))

    browser.find_element(By.ID, "admin-key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "save-key").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "accounts"), "CURSOR_TOKEN"))

    token = distinct_token("auth0|user_browser")
    browser.find_element(By.ID, "account-token").send_keys(token)
    browser.find_element(By.ID, "account-label").send_keys("from the browser")
    browser.find_element(By.ID, "add-account").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "accounts"), "from the browser"))
    row = browser.find_element(By.XPATH, "//tr[td[text()='from the browser']]")
    assert f"{token[:4]}…{token[-4:]}" in row.text and "active" in row.text
    assert token not in browser.page_source
    # "Expand token details": the models the account offers.
    row.find_element(By.XPATH, ".//button[text()='Details']").click()
    details = row.find_element(By.XPATH, "following-sibling::tr[1]")
    wait.until(lambda _: details.is_displayed())
    assert "composer-1" in details.text and "membershipType" in details.text

    browser.find_element(By.ID, "license-name").send_keys("browser-license")
    browser.find_element(By.ID, "create-license").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "licenses"), "browser-license"))
    key = browser.find_element(By.ID, "new-license-key").text
    assert key.startswith("sk-cg-")
    stored = admin_stack.admin("GET", "/licenses").json()["licenses"]
    assert any(x["name"] == "browser-license" and key.startswith(x["key_prefix"]) for x in stored)

    # Revoke from the page (confirm() accepted), then the license row says so.
    lic_row = browser.find_element(By.XPATH, "//tr[td[text()='browser-license']]")
    lic_row.find_element(By.XPATH, ".//button[text()='Revoke']").click()
    browser.switch_to.alert.accept()
    wait.until(lambda d: "revoked" in d.find_element(By.XPATH, "//tr[td[text()='browser-license']]").text)
    # The key survives a reload of the page within the tab (sessionStorage).
    browser.refresh()
    wait.until(ec.text_to_be_present_in_element((By.ID, "accounts"), "from the browser"))


# Wraps fetch before the page's own script runs: the accounts listing answers 500, as it did
# for every load once a crafted token was stored (issue 14, finding 4).
FAIL_ACCOUNTS = """
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => String(input).endsWith("/api/accounts")
  ? Promise.resolve(new Response(JSON.stringify({error: {message: "boom in core"}}), {status: 500}))
  : realFetch(input, init);
"""


def test_sections_load_independently(admin_stack: Stack, browser: object) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    assert admin_stack.admin("POST", "/licenses", {"name": "still-listed"}).status_code == 201
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAIL_ACCOUNTS})
    # The page re-renders its tables after every action: an element found a moment ago may be
    # replaced before it is read, so a stale reference means "look again", not failure.
    wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(f"{admin_stack.root_url}/cursor/admin")
    browser.find_element(By.ID, "admin-key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "save-key").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "licenses"), "still-listed"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "accounts-status"), "boom in core"))
    assert browser.find_element(By.ID, "accounts-status").is_displayed()
    assert not browser.find_element(By.ID, "licenses-status").is_displayed()
