"""/docs in headless Chromium with every origin but our server unreachable: Swagger UI renders every operation.

Chromium resolves no host name but 127.0.0.1 and sends everything else to a
dead proxy, so the page works only if nothing it needs comes from elsewhere;
the browser's own list of fetched resources must name our server alone.
Skipped where Debian's chromium is absent. Writes artifacts/browser/docs.png.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.stack import ApiThread

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "artifacts" / "browser" / "docs.png"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is absent: apt-get install chromium chromium-driver",
)


@pytest.fixture
def offline_browser() -> Iterator[Any]:
    """Headless Chromium that can reach 127.0.0.1 and nothing else."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-docs-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}", "--window-size=1280,1600",
        # No name resolves but our loopback address, and whatever is not loopback goes to a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _operations(browser: Any) -> int:
    count: int = browser.execute_script("return document.querySelectorAll('.opblock').length")
    return count


def test_docs_render_every_operation_with_no_network(offline_browser: Any, api: ApiThread) -> None:
    document = httpx.get(f"{api.base_url}/openapi.json", timeout=10).json()
    expected = sum(len(methods) for methods in document["paths"].values())
    offline_browser.get(f"{api.base_url}/docs")
    deadline = time.monotonic() + 30  # a generous bound on a busy machine, not a measurement
    while _operations(offline_browser) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    offline_browser.save_screenshot(str(SCREENSHOT))
    assert _operations(offline_browser) == expected, f"Swagger UI rendered {_operations(offline_browser)} of {expected}"
    title = offline_browser.execute_script("return document.querySelector('.info .title').textContent")
    assert title.startswith(document["info"]["title"])
    fetched: list[str] = offline_browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
    )
    assert fetched, "the browser fetched nothing"
    elsewhere = [url for url in fetched if not url.startswith(api.base_url + "/")]
    assert not elsewhere, f"the page fetched from elsewhere: {elsewhere}"
    assert f"{api.base_url}/openapi.json" in fetched
