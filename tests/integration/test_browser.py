"""The live page in headless Chromium: live cards over one stream, the poll fallback, accessibility.

Against a real demo stack (`profile-status demo`) and against the test API with
its page. Needs Debian's `chromium` and `chromium-driver` (driven through
Selenium); skipped only where Chromium is absent. axe-core comes from the npm
registry (`tests/browser/package-lock.json`) and is injected by the test, never
fetched by the page. Writes screenshots to artifacts/browser/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import Settings
from tests.integration.browser import (
    WINDOW,
    NetworkLog,
    axe_violations,
    chromium,
    console_errors,
    emulate_color_scheme,
    requires_chromium,
    settle,
    until,
    without_recent,
)
from tests.integration.demo_stack import ROOT, Demo
from tests.integration.rows import add_job, add_profile
from tests.integration.stack import ApiThread, eventually

ARTIFACTS = ROOT / "artifacts" / "browser"
SCREENSHOT = ARTIFACTS / "demo.png"  # what a laptop screen shows
FULL_PAGE = ARTIFACTS / "demo-full.png"  # the whole page, every card
STORAGE_KEY = "profile-status:following"  # where the page keeps the names its user follows

pytestmark = [pytest.mark.slow, requires_chromium]


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


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


def _open_following(browser: Any, base_url: str, usernames: list[str]) -> None:
    """Open the page as a user who follows `usernames` (the page keeps them in localStorage)."""
    # Written before the page's own script runs, so the page opens once, as that user.
    setting = f"localStorage.setItem({orjson.dumps(STORAGE_KEY).decode()}, {orjson.dumps(orjson.dumps(usernames).decode()).decode()})"
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": setting})
    browser.get(base_url + "/")


def _statuses(browser: Any) -> dict[str, str]:
    """Followed cards by username: the status each shows ("loading" before its first answer)."""
    shown: dict[str, str] = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#following .card')]"
        ".map(c => [c.dataset.username, c.dataset.status]))"
    )
    return shown


def _page_errors(browser: Any) -> list[dict[str, Any]]:
    """Console errors, but for Chromium's own line about a 404 of /api/queue/recent (off unless configured)."""
    return [e for e in console_errors(browser) if not ("/api/queue/recent" in e["message"] and "404" in e["message"])]


def _open_streams(http: httpx.Client) -> float:
    """The API's open Server-Sent Events streams, as its /metrics says."""
    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    return families["profile_status_api_sse_clients"].samples[0].value


# --------------------------------------------------------------------------- against the demo


def test_a_followed_card_moves_from_pending_to_exists_without_a_reload(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    username = f"browser_check_{int(time.time()) % 100000}"
    network = NetworkLog(browser)
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

            until(lambda: card_status() == "PENDING", 15, "the followed card to show PENDING")
            card = browser.find_element(By.CSS_SELECTOR, f"#following .card[data-username='{username}']")
            assert "Queue position" in card.get_attribute("textContent")  # .text is empty while it fades in
            holder.rollback()  # let a worker take it

            until(lambda: card_status() == "PROCESSING", 15, "the card to show PROCESSING")
            until(lambda: card_status() == "exists", 45, "the card to reach exists")

        assert browser.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"
        history = card.get_attribute("data-history").split()
        assert history[0] == "PENDING" and history[-1] == "exists" and "PROCESSING" in history, history
        assert card.get_attribute("data-mode") == "done"
        assert "Followers" in card.get_attribute("textContent")
        # Live, not polled: the card rode on the page's stream, and was never polled.
        assert any(username in url for url in network.of_type("EventSource"))
        assert not any(f"/api/profile/{username}/" in url for url in network.of_type("Fetch"))

        # The overview and the auto-followed recent cards are there too.
        until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#recent .card")) >= 3, 15, "recent cards")
        assert browser.find_element(By.ID, "ov-active").text.strip() not in ("", "–")
        until(lambda: browser.find_elements(By.CSS_SELECTOR, "#recent .card[data-status='PROCESSING']"), 15,
              "a processing card among the recent ones")
        settle(browser)  # the progress bars' transitions
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(WINDOW[0], height + 150)  # the window's own chrome, in headless too
        assert browser.save_screenshot(str(FULL_PAGE))

        assert console_errors(browser) == []


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

        until(lambda: _card(browser, username, "mode") == "poll", 20, "the card to fall back to polling")
        until(lambda: _card(browser, username, "status") == "NOT_FOUND", 10, "the first poll's answer")
        # NOT_FOUND is re-checked every 5 s; unchanged, the API answers 304 to our If-None-Match.
        until(lambda: int(_card(browser, username, "notModified") or 0) >= 1, 15, "a 304 Not Modified")

        with demo.connect() as db:
            db.execute(
                "INSERT INTO queue (username, source, priority, request_id) VALUES (%s, 'browser-test', 'HIGH', %s)",
                (username, f"fallback-{username}"),
            )
        until(lambda: _card(browser, username, "status") not in (None, "NOT_FOUND"), 15,
              "the polled card to pick up the request")
        assert browser.execute_script("return window.__sameDocument") == "yes", "the page was reloaded"


# --------------------------------------------------------------------------- against the test API


def _twenty_jobs(db: psycopg.Connection) -> dict[str, str]:
    """Twenty usernames in every state a card shows, by the status each should show."""
    now = datetime.now(UTC)
    expected: dict[str, str] = {}
    for i in range(6):
        add_job(db, f"page_pending_{i}", status="PENDING", priority=("HIGH", "MEDIUM", "LOW")[i % 3])
        expected[f"page_pending_{i}"] = "PENDING"
    for i in range(4):
        add_job(db, f"page_running_{i}", status="PROCESSING", last_attempt=now)
        expected[f"page_running_{i}"] = "PROCESSING"
    for i in range(3):
        add_profile(db, f"page_ready_{i}")
        expected[f"page_ready_{i}"] = "exists"
    for i in range(2):
        add_job(db, f"page_done_{i}", status="COMPLETED", last_attempt=now)
        expected[f"page_done_{i}"] = "COMPLETED"
    add_job(db, "page_retrying", status="FAILED", attempts=1, last_attempt=now, error_message="Rate limited")
    add_job(db, "page_failed", status="FAILED", attempts=3, last_attempt=now, error_message="Profile not accessible")
    expected |= {"page_retrying": "FAILED", "page_failed": "FAILED"}
    for i in range(3):
        expected[f"page_unknown_{i}"] = "NOT_FOUND"
    assert len(expected) == 20
    return expected


def test_the_page_follows_twenty_cards_over_one_stream(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection, browser: Any, projector: Any
) -> None:
    expected = _twenty_jobs(db)
    eventually(lambda: http.get("/api/profile/page_failed/status").json()["data"]["status"] == "FAILED")
    network = NetworkLog(browser)
    _open_following(browser, api.base_url, list(expected))
    until(lambda: _statuses(browser) == expected, 20, "every card's state")
    assert {_card(browser, n, "mode") for n in expected if expected[n] in ("PENDING", "PROCESSING")} == {"sse"}

    # A change reaches its card over the same stream.
    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() WHERE username = 'page_pending_0'")
    add_job(db, "page_unknown_0", status="PENDING")
    until(lambda: _statuses(browser) == expected | {"page_pending_0": "PROCESSING", "page_unknown_0": "PENDING"},
          10, "the pushed changes")

    streams = network.of_type("EventSource")
    assert len(streams) == 1, streams  # one request, for all twenty
    assert sorted(streams[0].split("usernames=")[1].split(",")) == sorted(expected)
    assert _open_streams(http) == 1
    assert not [u for u in network.of_type("Fetch") if "/api/profile/" in u], "no card polls while the stream runs"
    print(f"\n20 cards: {len(streams)} EventSource request, {_open_streams(http):g} open stream on the server")
    assert _page_errors(browser) == []


def test_the_page_copes_when_recent_usernames_are_off(
    settings: Settings, db: psycopg.Connection, browser: Any, projector: Any
) -> None:
    server = ApiThread(settings, wrap=without_recent).start()
    try:
        add_job(db, "alone_here", status="PENDING")
        network = NetworkLog(browser)
        browser.get(server.base_url + "/")
        _follow(browser, "alone_here")
        until(lambda: _statuses(browser) == {"alone_here": "PENDING"}, 15, "the followed card")
        until(lambda: browser.execute_script("return !document.getElementById('recent-off').hidden"), 10,
              "the page to say recent usernames are off")
        assert browser.execute_script("return document.getElementById('recent-empty').hidden")
        until(lambda: browser.execute_script("return document.getElementById('ov-active').textContent") == "1", 10,
              "the overview")

        def fetched(path: str) -> int:
            return len([u for u in network.of_type("Fetch") if path in u])

        rounds = fetched("/api/queue/status")
        until(lambda: fetched("/api/queue/status") >= rounds + 2, 10, "two more rounds of the overview")
        assert fetched("/api/queue/recent") == 1, "asked once, then no more"
        # The one 404 is logged by Chromium itself, as every failed load is; nothing else.
        errors = console_errors(browser)
        assert all("/api/queue/recent" in e["message"] and "404" in e["message"] for e in errors), errors
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_in_either_colour_scheme(
    api: ApiThread, http: httpx.Client, db: psycopg.Connection, browser: Any, projector: Any, axe_source: str,
    scheme: str,
) -> None:
    expected = _twenty_jobs(db)
    eventually(lambda: http.get("/api/profile/page_failed/status").json()["data"]["status"] == "FAILED")
    emulate_color_scheme(browser, scheme)
    followed = ["page_pending_0", "page_running_0", "page_ready_0", "page_done_0", "page_retrying", "page_failed",
                "page_unknown_0"]  # a card of each state (and, where the server lists them, recent ones)
    _open_following(browser, api.base_url, followed)
    until(lambda: _statuses(browser) == {n: expected[n] for n in followed}, 20, "the followed cards' states")
    settle(browser)
    assert browser.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")

    violations = axe_violations(browser, axe_source)
    by_impact: dict[str, list[str]] = {}
    for v in violations:
        by_impact.setdefault(v["impact"], []).append(f"{v['id']} ({len(v['nodes'])} nodes)")
    print(f"\naxe-core, {scheme} scheme: {by_impact or 'no violations'}")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], orjson.dumps(serious, option=orjson.OPT_INDENT_2).decode()

    # What the repeated controls are called, for a screen reader.
    names = browser.execute_script(
        "return [...document.querySelectorAll('.card .pin:not([hidden]), .card .unfollow:not([hidden])')]"
        ".map(b => b.getAttribute('aria-label'))"
    )
    assert len(names) == len(set(names)) >= len(followed), names
    assert all(n.startswith(("Follow @", "Unfollow @")) for n in names), names
    bars = browser.execute_script(
        "return [...document.querySelectorAll('.card [role=progressbar]')]"
        ".map(b => [b.getAttribute('aria-label'), b.getAttribute('aria-valuenow'), b.getAttribute('aria-valuetext')])"
    )
    assert bars and all(label.startswith("Progress of @") and now and text for label, now, text in bars), bars
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / f"page-{scheme}.png"))
    assert _page_errors(browser) == []
