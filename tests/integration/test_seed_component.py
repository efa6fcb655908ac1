"""The seed's React frontend, unchanged, against the real API (issue 16).

`tests/browser/src/ProfileStatusTracker.tsx` is the spec's component byte for
byte; Vite builds it (with React, from the npm registry) into a page served
on the API's origin, as a frontend's own server would proxy `/api`. Chromium
drives it through every state. The harness only replaces `setInterval`, so
that the test says when the component's next poll happens instead of waiting
15-30 s of real time, and records the component's `onCompleted`/`onError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from shared.settings import Settings
from tests.integration.browser import (
    NPM_PROJECT,
    SameOrigin,
    chromium,
    console_errors,
    requires_chromium,
    until,
)
from tests.integration.rows import add_job, add_profile
from tests.integration.stack import ApiThread, eventually

COMPONENT = NPM_PROJECT / "src" / "ProfileStatusTracker.tsx"
SPEC = Path(__file__).parents[2].parent / "shared" / "seed" / "status-endpoint-spec.md"


def test_the_component_is_the_spec_s_byte_for_byte() -> None:
    if not SPEC.exists():
        pytest.skip("the seed specification is not beside this checkout")
    blocks = re.findall(rb"^```typescript\n(.*?)^```$", SPEC.read_bytes(), re.MULTILINE | re.DOTALL)
    (block,) = [b for b in blocks if b"export const ProfileStatusTracker" in b]
    assert COMPONENT.read_bytes() == block


@pytest.fixture
def site(settings: Settings, projector: Any, seed_component_site: Path) -> Iterator[ApiThread]:
    """The built component at `/`, the API under `/api/`, on one origin."""
    server = ApiThread(settings, wrap=SameOrigin(seed_component_site)).start()
    yield server
    server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        # The test brings each poll forward; a real one comes after the answer's max-age (at most
        # the polling advice) has passed, so the browser's HTTP cache must not answer it.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        yield driver


def _data(http: httpx.Client, username: str) -> dict[str, Any]:
    data: dict[str, Any] = http.get(f"/api/profile/{username}/status").json()["data"]
    return data


def _status(http: httpx.Client, username: str) -> str:
    return str(_data(http, username)["status"])


class Tracker:
    """The component mounted for one username in the browser."""

    def __init__(self, browser: Any, site: ApiThread, username: str) -> None:
        self.browser = browser
        browser.get(f"{site.base_url}/?username={username}")
        until(lambda: self.browser.execute_script("return !!document.querySelector('.profile-status-tracker')"),
              15, f"the component's first answer for {username}")

    @property
    def text(self) -> str:
        text: str = self.browser.execute_script("return document.getElementById('root').innerText")
        return text

    def block(self, selector: str) -> str | None:
        """innerText of one of the component's blocks, None when it is not rendered."""
        text: str | None = self.browser.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null", selector
        )
        return text

    @property
    def calls(self) -> list[list[Any]]:
        calls: list[list[Any]] = self.browser.execute_script("return window.__calls")
        return calls

    @property
    def intervals(self) -> list[int]:
        """Periods (ms) of the component's live intervals, oldest first."""
        periods: list[int] = self.browser.execute_script("return window.__intervals()")
        return periods

    def poll(self, shows: str) -> str:
        """Let the component's next poll happen; wait until it renders `shows`."""
        assert self.browser.execute_script("return window.__poll()"), "the component polls no more"
        until(lambda: shows in self.text, 15, f"the component to show {shows!r}")
        return self.text


@pytest.mark.slow
@requires_chromium
def test_a_job_from_not_found_to_ready(site: ApiThread, browser: Any, db: psycopg.Connection) -> None:
    name = "seed_flow"
    with site.client() as http:
        tracker = Tracker(browser, site, name)
        text = tracker.text
        # NOT_FOUND: no TypeError, no onError; it keeps checking at the advised interval.
        assert "Profile not found in queue or database" in text and "Checking every 30 seconds" in text, text
        assert tracker.block(".stage-info") is None
        assert tracker.calls == []
        assert tracker.intervals == [30_000, 30_000]  # its own first interval, then the advice's

        add_job(db, name, status="PENDING", priority="HIGH")
        eventually(lambda: _status(http, name) == "PENDING")
        text = tracker.poll("Profile is pending")
        assert "Stage: queued" in text and "Queue position: #1" in text and "Estimated time: 1-2 minutes" in text, text
        assert "Checking every 30 seconds" in text

        # Started ahead of the API's clock: a duration of 0, sent as null, so no stray "0".
        db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() + interval '1 hour'"
                   " WHERE username = %s", (name,))
        eventually(lambda: _status(http, name) == "PROCESSING")
        text = tracker.poll("Profile is processing")
        assert tracker.block(".stage-info") == "Stage: initializing", text
        assert "Checking every 15 seconds" in text and 15_000 in tracker.intervals

        db.execute("UPDATE queue SET last_attempt = now() - interval '90 seconds' WHERE username = %s", (name,))
        eventually(lambda: _data(http, name)["processing_stage"] == "fetching_profile_data")
        text = tracker.poll("Duration:")
        assert re.search(r"Stage: fetching profile_data\s+Duration: 9\ds", text), text  # the seed replaces one "_"
        assert "Checking every 30 seconds" in text

        db.execute("UPDATE queue SET status = 'COMPLETED' WHERE username = %s", (name,))
        eventually(lambda: _status(http, name) == "COMPLETED")
        text = tracker.poll("Profile is completed")
        assert "Stage: completed" in text and "Checking every" not in text, text  # "stop"
        assert tracker.calls == []  # completed: false until the profile exists, as the component reads it

        add_profile(db, name, followers=125000, posts=847)
        eventually(lambda: _status(http, name) == "exists")
        text = tracker.poll("Processing completed successfully!")
        assert "Followers: 125,000" in text and "Posts: 847" in text and "(fresh)" in text, text
        ((callback, data),) = tracker.calls
        assert callback == "onCompleted" and data["status"] == "exists" and data["followers_count"] == 125000
        assert console_errors(browser) == []


@pytest.mark.slow
@requires_chromium
def test_every_other_state(site: ApiThread, browser: Any, db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    add_job(db, "seed_retry", status="FAILED", attempts=1, last_attempt=now, error_message="Rate limited")
    add_job(db, "seed_failed", status="FAILED", attempts=3, last_attempt=now, error_message="Profile not accessible")
    add_job(db, "seed_failed_quiet", status="FAILED", attempts=3, last_attempt=now)
    add_job(db, "seed_running", status="PROCESSING", last_attempt=now - timedelta(seconds=10))
    add_job(db, "seed_behind", status="PENDING", priority="LOW")
    add_profile(db, "seed_ready", followers=1000, posts=10)
    with site.client() as http:
        for name in ("seed_retry", "seed_failed", "seed_failed_quiet", "seed_running", "seed_behind", "seed_ready"):
            eventually(lambda name=name: _status(http, name) != "NOT_FOUND")

    retry = Tracker(browser, site, "seed_retry")
    text = retry.text
    assert "Profile is failed" in text and "Error: Rate limited" in text, text
    assert re.search(r"Retry available at: \d", text), text  # next_retry_time is a time the browser can read
    assert "Checking every" not in text and retry.calls == []  # eligible for retry: not an error for the component

    for name, message in [("seed_failed", "Profile not accessible"), ("seed_failed_quiet", "Unknown error")]:
        failed = Tracker(browser, site, name)
        assert failed.calls == [["onError", f"Processing failed: {message}"]], name
        assert "Retry available" not in failed.text

    running = Tracker(browser, site, "seed_running")
    assert re.search(r"Stage: initializing\s+Duration: 1\ds", running.text), running.text
    assert "Checking every 15 seconds" in running.text and running.calls == []

    behind = Tracker(browser, site, "seed_behind")
    assert "Stage: queued" in behind.text and "Queue position: #" in behind.text and behind.calls == []

    ready = Tracker(browser, site, "seed_ready")
    assert "Processing completed successfully!" in ready.text and "Followers: 1,000" in ready.text, ready.text
    assert [c[0] for c in ready.calls] == ["onCompleted"]

    assert console_errors(browser) == []

