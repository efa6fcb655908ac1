"""The /docs page's URLs under a proxy prefix (what the real server serves is tested in tests/integration/test_docs.py)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from api.docs import docs_routes
from tests.page_references import References


@pytest.mark.parametrize("prefix", ["", "/status-api", "/a/b"])
async def test_page_urls_follow_the_root_path(prefix: str) -> None:
    """Behind a proxy that strips a prefix (uvicorn --root-path), every URL of the page carries it."""
    transport = httpx.ASGITransport(app=Starlette(routes=docs_routes()), root_path=prefix)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # As uvicorn --root-path passes a request on: the prefix is in the path as well as in root_path.
        page = await client.get(prefix + "/docs")
        parser = References()
        parser.feed(page.text)
        assert parser.urls and all(url.startswith(prefix + "/docs/") for url in parser.urls), parser.urls
        assert parser.data_urls["data-openapi-url"] == prefix + "/openapi.json"
        for url in parser.urls:
            assert (await client.get(url)).status_code == 200, url
