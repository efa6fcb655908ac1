"""Tools for fault-injection tests: watching the API answer while something is broken."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import httpx


class ApiWatch:
    """Polls the API for some usernames in a thread, counting answers by status code.

    `check(username, data)` may judge each 200's `data`; answers it rejects are
    kept in `wrong` (username, data), the first few of them.
    """

    def __init__(
        self, base_url: str, usernames: Iterable[str], check: Callable[[str, dict[str, Any]], bool] | None = None,
        interval_s: float = 0.05,
    ) -> None:
        self.base_url = base_url
        self.usernames = list(usernames)
        self.check = check
        self.interval_s = interval_s
        self.codes: Counter[int] = Counter()
        self.wrong: list[tuple[str, dict[str, Any]]] = []
        self.wrong_count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-watch", daemon=True)

    def start(self) -> ApiWatch:
        """Begin polling."""
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5) as http:
            while not self._stop.is_set():
                for name in self.usernames:
                    try:
                        response = http.get(f"/api/profile/{name}/status")
                    except httpx.HTTPError:
                        self.codes[0] += 1  # no answer at all
                        continue
                    self.codes[response.status_code] += 1
                    if response.status_code == 200 and self.check is not None:
                        data = response.json()["data"]
                        if not self.check(name, data):
                            self.wrong_count += 1
                            if len(self.wrong) < 5:
                                self.wrong.append((name, data))
                self._stop.wait(self.interval_s)

    def stop(self) -> dict[int, int]:
        """Stop polling; the answers counted by status code."""
        self._stop.set()
        self._thread.join(10)
        return dict(self.codes)


def summary(name: str, codes: dict[int, int], recovered_s: float, differences: int) -> str:
    """One row of the fault matrix, printed by each test (collected for the closing note)."""
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    return f"FAULT | {name} | verify differences {differences} | API answers {answers} | recovered in {recovered_s:.2f} s"


def timed(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> float:
    """Seconds until `check()` is truthy (AssertionError after `timeout`)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def rules_fail_for(monkeypatch: Any, username: str) -> Callable[[], None]:
    """Make the projection rules raise on `username`'s rows (stands for a row no rule foresaw);
    returns what puts the real rules back (the rules learning the value)."""
    from shared.postgres import snapshots

    real = snapshots.project_with_members

    def fails_for_one(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == username:
            raise ArithmeticError("a value no rule foresaw")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(snapshots, "project_with_members", fails_for_one)
    return lambda: monkeypatch.setattr(snapshots, "project_with_members", real)
