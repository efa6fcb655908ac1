"""`GET /docs`: the API reference page and every file it loads come from our own server, nothing from elsewhere."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx

from api.docs import ASSETS, swagger_ui_dir
from tests.page_references import References

# Anything a browser would fetch from another origin: absolute or scheme-relative URLs.
EXTERNAL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+""", re.IGNORECASE)


def _page(http: httpx.Client) -> tuple[httpx.Response, References]:
    response = http.get("/docs")
    parser = References()
    parser.feed(response.text)
    return response, parser


def test_docs_page_is_html_with_no_outside_url(http: httpx.Client) -> None:
    response, refs = _page(http)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not EXTERNAL.findall(response.text), "the page names another origin"
    assert refs.urls, "the page loads nothing"
    for url in refs.urls:
        assert urlsplit(url).scheme == "" and urlsplit(url).netloc == "", url


def test_every_file_the_page_loads_is_served_by_the_app(http: httpx.Client) -> None:
    _, refs = _page(http)
    base = str(http.base_url).rstrip("/") + "/docs"
    fetched: dict[str, httpx.Response] = {}
    for url in refs.urls:
        absolute = urljoin(base, url)
        assert absolute.startswith(str(http.base_url).rstrip("/") + "/"), absolute
        fetched[url] = response = http.get(absolute)
        assert response.status_code == 200, url
        assert response.content, url
    types = {url.rsplit("/", 1)[-1]: r.headers["content-type"] for url, r in fetched.items()}
    assert types["swagger-ui-bundle.js"].split(";")[0] in ("text/javascript", "application/javascript")
    assert types["start.js"].split(";")[0] == "text/javascript"
    assert types["swagger-ui.css"].startswith("text/css")
    assert types["favicon-32x32.png"] == "image/png"
    # The files are the package's, byte for byte.
    for name in ASSETS:
        (url,) = [u for u in fetched if u.endswith("/" + name)]
        assert fetched[url].content == (swagger_ui_dir() / name).read_bytes(), name


def test_the_start_script_reads_our_openapi_document(http: httpx.Client) -> None:
    _, refs = _page(http)
    (start,) = [u for u in refs.urls if u.endswith("/start.js")]
    script = http.get(start).text
    assert not EXTERNAL.findall(script), "the start script names another origin"
    assert "validatorUrl: null" in script, "the validator badge would send the document elsewhere"
    document = http.get(refs.data_urls["data-openapi-url"])
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")


def test_stylesheet_loads_nothing_from_elsewhere(http: httpx.Client) -> None:
    _, refs = _page(http)
    (css,) = [u for u in refs.urls if u.endswith(".css")]
    for target in re.findall(r"url\(\s*['\"]?([^'\")]+)", http.get(css).text):
        assert target.startswith("data:"), f"the stylesheet fetches {target}"
