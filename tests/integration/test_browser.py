"""The live page in headless Chromium against a real demo stack: a followed card goes PENDING -> exists, no reload.

Needs Debian's `chromium` and `chromium-driver` (driven through Selenium); skipped only where
Chromium is absent. Writes a screenshot to artifacts/browser/demo.png.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.demo_stack import ROOT, Demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "artifacts" / "browser" / "demo.png"  # what a laptop screen shows
FULL_PAGE = SCREENSHOT.with_name("demo-full.png")  # the whole page, every card
WINDOW = (1440, 900)  # a laptop screen

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"headless Chromium is absent ({CHROMIUM}): apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile, nothing fetched from the network but our page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER.exists(), f"{CHROMEDRIVER} is missing: apt-get install chromium-driver"
    profile = tempfile.mkdtemp(prefix="chromium-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager from looking for one online.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _follow(browser: Any, typed: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "follow-input").send_keys(typed)
    browser.find_element(By.CSS_SELECTOR, "#follow-form button[type=submit]").click()


def _card(browser: Any, username: str, attribute: str) -> str | None:
    """A data attribute of the followed card of `username` (None when there is no such card)."""
    value: str | None = browser.execute_script(
        "const c = document.querySelector(`#following .card[data-username='${arguments[0]}']`);"
        "return c ? c.dataset[arguments[1]] ?? null : null;",
        username,
        attribute,
    )
    return value


def test_a_followed_card_moves_from_pending_to_exists_without_a_reload(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    username = f"browser_check_{int(time.time()) % 100000}"
    # Jobs take ~9 s (270 simulated s / 30), so the stages show; no failures, so the followed job completes.
    flags = ("--speed", "30", "--rate", "0.5", "--workers", "3", "--failure-ratio", "0", "--initial", "6")
    with Demo(*flags) as demo:
        demo.wait_ready()
        with demo.connect() as db, demo.connect() as holder:
            # Workers claim with FOR UPDATE SKIP LOCKED, so a KEY SHARE lock keeps the job
            # PENDING until the page has shown it so (and it still lets us update the row).
            # The row is inserted under a status no worker takes, so none can claim it first.
            db.execute(
                "INSERT INTO queue (username, source, priority, request_id, status) "
                "VALUES (%s, 'browser-test', 'HIGH', %s, 'HOLD')",
                (username, f"browser-{username}"),
            )
            holder.autocommit = False
            holder.execute("SELECT 1 FROM queue WHERE username = %s FOR KEY SHARE", (username,))
            db.execute("UPDATE queue SET status = 'PENDING', updated_at = now() WHERE username = %s", (username,))

            browser.get(demo.base_url + "/")
            browser.execute_script("window.__sameDocument = 'yes'")
            _follow(browser, "@" + username.upper())  # the page normalizes like the API

            def card_status() -> str | None:
                return _card(browser, username, "status")

            _until(lambda: card_status() == "PENDING", 15, "the followed card to show PENDING")
            card = browser.find_element(By.CSS_SELECTOR, f"#following .card[data-username='{username}']")
            assert "Queue position" in card.get_attribute("textContent")  # .text is empty while it fades in
            holder.rollback()  # let a worker take it

            _until(lambda: card_status() == "PROCESSING", 15, "the card to show PROCESSING")
            _until(lambda: card_status() == "exists", 45, "the card to reach exists")

        assert browser.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"
        history = card.get_attribute("data-history").split()
        assert history[0] == "PENDING" and history[-1] == "exists" and "PROCESSING" in history, history
        assert card.get_attribute("data-mode") == "done"
        assert "Followers" in card.get_attribute("textContent")
        # Live, not polled: a followed card gets one of the page's streams.
        assert browser.execute_script("return performance.getEntriesByType('resource')"
                                      ".some(e => e.name.includes(arguments[0] + '/status/stream'))", username)

        # The overview and the auto-followed recent cards are there too.
        _until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#recent .card")) >= 3, 15, "recent cards")
        assert browser.find_element(By.ID, "ov-active").text.strip() not in ("", "–")
        _until(lambda: browser.find_elements(By.CSS_SELECTOR, "#recent .card[data-status='PROCESSING']"), 15,
               "a processing card among the recent ones")
        time.sleep(1.0)  # let the progress bars finish their transition
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(WINDOW[0], height + 150)  # the window's own chrome, in headless too
        assert browser.save_screenshot(str(FULL_PAGE))

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


def test_without_streams_a_card_falls_back_to_etag_polling(browser: Any) -> None:
    username = f"fallback_check_{int(time.time()) % 100000}"
    flags = ("--speed", "30", "--rate", "0", "--workers", "2", "--failure-ratio", "0", "--initial", "0")
    with Demo(*flags) as demo:
        demo.wait_ready()
        # As behind a proxy that breaks SSE: every stream request fails.
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/status/stream*"]})
        browser.get(demo.base_url + "/")
        browser.execute_script("window.__sameDocument = 'yes'")
        _follow(browser, username)

        _until(lambda: _card(browser, username, "mode") == "poll", 20, "the card to fall back to polling")
        assert _card(browser, username, "status") == "NOT_FOUND"
        # NOT_FOUND is re-checked every 5 s; unchanged, the API answers 304 to our If-None-Match.
        _until(lambda: int(_card(browser, username, "notModified") or 0) >= 1, 15, "a 304 Not Modified")

        with demo.connect() as db:
            db.execute(
                "INSERT INTO queue (username, source, priority, request_id) VALUES (%s, 'browser-test', 'HIGH', %s)",
                (username, f"fallback-{username}"),
            )
        _until(lambda: _card(browser, username, "status") not in (None, "NOT_FOUND"), 15,
               "the polled card to pick up the request")
        assert browser.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"
