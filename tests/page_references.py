"""The URLs an HTML page makes a browser fetch, for tests that check where a page loads from."""

from __future__ import annotations

from html.parser import HTMLParser


class References(HTMLParser):
    """The URLs an HTML page makes a browser fetch: scripts, stylesheets, icons, images, and data-*-url values."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.data_urls: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in ("src", "href"):
            if name in values:
                self.urls.append(values[name])
        self.data_urls.update({name: value for name, value in values.items() if name.endswith("-url")})
