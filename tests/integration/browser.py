"""Headless Chromium for the browser tests, and the npm packages they use.

Chromium and its driver come from Debian (`chromium`, `chromium-driver`), driven
through Selenium with nothing fetched from the network but our pages. axe-core
and the build of the seed's React component (Vite, React) come from the npm
registry through `tests/browser/package-lock.json`: `npm ci` once, whenever
`node_modules` was not installed from that lock, then reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.integration.demo_stack import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NPM_PROJECT = ROOT / "tests" / "browser"
WINDOW = (1440, 900)  # a laptop screen
_LOCK_STAMP = ".installed-from-lock"
NPM_TIMEOUT_S = 600

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"headless Chromium is absent ({CHROMIUM}): apt-get install chromium chromium-driver"
)


@contextlib.contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator[Any]:
    """Headless Chromium with a fresh profile; its console and network logs are kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMEDRIVER.exists(), f"{CHROMEDRIVER} is missing: apt-get install chromium-driver"
    profile = tempfile.mkdtemp(prefix="chromium-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
                 f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path keeps Selenium Manager from looking for one online.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The console's errors since the last call (uncaught exceptions and failed loads included)."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


class NetworkLog:
    """The requests a page made, from Chromium's performance log (which each read drains)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.requests: list[dict[str, Any]] = []

    def refresh(self) -> NetworkLog:
        """Read what arrived since the last call."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                params = message["params"]
                self.requests.append({"type": params.get("type"), "url": params["request"]["url"]})
        return self

    def of_type(self, kind: str) -> list[str]:
        """URLs of the requests of one resource type (e.g. "EventSource", "Fetch")."""
        return [r["url"] for r in self.refresh().requests if r["type"] == kind]


def emulate_color_scheme(driver: Any, scheme: str) -> None:
    """Answer `prefers-color-scheme` with `scheme` ("light" or "dark") from now on."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )


def settle(driver: Any, timeout: float = 10) -> None:
    """Bring every finite CSS animation or transition to its end (a fading card has partial contrast).

    On the live page updates keep starting new ones (a progress bar's 0.7 s width
    transition per event): waiting for a moment with none running is a race, so
    the running ones are finished, then checked, in one script.
    """
    until(
        lambda: driver.execute_script(
            "const finite = a => a.effect.getComputedTiming().iterations !== Infinity;"
            " document.getAnimations().filter(a => a.playState === 'running' && finite(a)).forEach(a => a.finish());"
            " return document.getAnimations().every(a => a.playState !== 'running' || !finite(a))"
        ),
        timeout,
        "animations to finish",
    )


def axe_violations(driver: Any, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's violations on the current page: id, impact, help and the offending nodes."""
    driver.execute_script(axe_source)
    driver.set_script_timeout(60)
    result: dict[str, Any] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then(r => done({violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        "    nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary}))}))}))"
        "  .catch(e => done({error: String(e)}));"
    )
    assert "error" not in result, result
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def npm_packages() -> Path:
    """`tests/browser/node_modules`, installed with `npm ci` unless it already is from this lock."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is absent: the browser tests install axe-core, Vite and React from the npm registry")
    lock = NPM_PROJECT / "package-lock.json"
    modules = NPM_PROJECT / "node_modules"
    want = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = modules / _LOCK_STAMP
    if not (stamp.exists() and stamp.read_text() == want):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NPM_PROJECT, check=True,
                       timeout=NPM_TIMEOUT_S)
        stamp.write_text(want)
    return modules


def vite_build(modules: Path, out_dir: Path) -> Path:
    """Build `tests/browser` (the harness around the seed's component) into `out_dir`."""
    node = shutil.which("node")
    assert node, "node is absent, though npm is there"
    env = {**os.environ, "PROFILE_STATUS_BUILD_DIR": str(out_dir)}
    subprocess.run([node, str(modules / "vite" / "bin" / "vite.js"), "build"], cwd=NPM_PROJECT, env=env, check=True,
                   timeout=NPM_TIMEOUT_S)
    assert (out_dir / "index.html").exists()
    return out_dir


class SameOrigin:
    """A built frontend at `/`, the API under `/api/`: one origin, as a frontend's own server would give."""

    def __init__(self, site_dir: Path) -> None:
        from starlette.staticfiles import StaticFiles

        self.site = StaticFiles(directory=site_dir, html=True)

    def __call__(self, api: ASGIApp) -> ASGIApp:
        """Wrap the API (for `ApiThread(wrap=...)`)."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith("/api/"):
                await api(scope, receive, send)  # the lifespan too
            else:
                await self.site(scope, receive, send)

        return app


def without_recent(api: ASGIApp) -> ASGIApp:
    """The API with `/api/queue/recent` off, as by configuration: 404."""
    from api.responses import error

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/queue/recent":
            await error(404, "Not Found")(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app
