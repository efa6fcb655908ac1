"""`GET /docs`: an interactive API reference (Swagger UI) over `/openapi.json`, served by this app alone.

Swagger UI's files come from the swagger-ui-py package (Apache-2.0), installed
with the project, so the page works on a machine without internet access: no
CDN, no font or script from elsewhere. Only the package's static folder is
used (its own framework glue would add routes and a config endpoint we do not
need), found without importing the package. The page and its start script
are ours: no inline script, so a strict Content-Security-Policy can allow it.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"

# The Swagger UI files the page loads, from the package's static folder.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>profile-status API reference</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{assets}/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{docs}/start.js"></script>
</body>
</html>
"""

# Base layout: no top bar with a box to load any URL's document, and no
# validator badge (which would send the document to an outside service).
_START = """"use strict";
window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.dataset.openapiUrl,
    domNode: node,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's files in the installed swagger-ui-py package."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def docs_page(request: Request) -> Response:
    """The reference page; its URLs honour the root path of a proxy that mounts the API under a prefix."""
    root = request.scope.get("root_path", "").rstrip("/")
    body = _PAGE.format(
        assets=html.escape(root + ASSETS_PATH),
        docs=html.escape(root + DOCS_PATH),
        openapi=html.escape(root + OPENAPI_PATH),
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


async def docs_start(request: Request) -> Response:
    """The script that starts Swagger UI on the page."""
    return Response(_START, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


def docs_routes() -> list[BaseRoute]:
    """`/docs`, its start script and Swagger UI's files."""
    return [
        Route(DOCS_PATH, docs_page, methods=["GET"]),
        Route(f"{DOCS_PATH}/start.js", docs_start, methods=["GET"]),
        Mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_dir()), name="docs-assets"),
    ]
