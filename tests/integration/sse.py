"""A Server-Sent Events client for tests: reads a stream in a thread, as a browser's EventSource would parse it."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import orjson


class Listener:
    """Records the events (arrival time, fields) and comments of one stream request."""

    def __init__(self, base_url: str, path: str, last_event_id: str | None = None) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.comments: list[str] = []
        self.status_code: int | None = None
        self.ended = threading.Event()
        self.error: httpx.HTTPError | None = None
        self._url = base_url + path
        self._headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as exc:  # the server went away (a test stopping it)
            self.error = exc
        self.ended.set()

    def _read(self) -> None:
        event: dict[str, Any] = {}
        with httpx.stream("GET", self._url, headers=self._headers, timeout=30) as response:
            self.status_code = response.status_code
            for line in response.iter_lines():
                if not line:  # a blank line ends an event
                    if "data" in event:
                        self.events.append((time.monotonic(), event))
                    event = {}
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("event:"):
                    event["event"] = line[6:].strip()
                elif line.startswith("id:"):
                    event["id"] = line[3:].strip()
                elif line.startswith("data:"):
                    event["data"] = orjson.loads(line[5:].strip())

    @property
    def caught_up(self) -> bool:
        """The stream has sent what the client did not hold yet."""
        return "caught up" in self.comments

    def of(self, kind: str = "status") -> list[dict[str, Any]]:
        """The events named `kind`, in order."""
        return [e for _, e in self.events if e.get("event") == kind]

    def statuses(self) -> list[str]:
        """The `status` of each status event's answer."""
        return [e["data"]["data"]["status"] for e in self.of()]

    def last_id(self) -> str:
        """The `id:` of the last event, as EventSource would send it back."""
        return str(self.events[-1][1]["id"])
