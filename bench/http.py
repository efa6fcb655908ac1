"""Load generation with wrk, parsing its `--latency` report, and fetching ETags for the 304 runs."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import CLIENT_CORE, pinned

MIX_LUA = Path(__file__).resolve().parent / "wrk" / "mix.lua"
ETAG_FETCH_CONNECTIONS = 16
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_STATUS = re.compile(r"^STATUS 200=(\d+) 304=(\d+) other=(\d+)", re.MULTILINE)
_OTHER = re.compile(r"^OTHER (.*)$", re.MULTILINE)
_TAIL = re.compile(r"^LATENCY p999_us=(\d+) max_us=(\d+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_available() -> bool:
    """`wrk` is on the PATH (Debian: `apt-get install -y wrk`)."""
    return shutil.which("wrk") is not None


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and what the server answered."""

    requests_per_s: float
    requests: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    status_200: int
    status_304: int
    status_other: int
    socket_errors: int
    # The first answer that was neither 200 nor 304: "<status> <body>", or "".
    other_sample: str = ""
    p999_ms: float = float("nan")
    max_ms: float = float("nan")
    # The server's longest event-loop stall during the run (ours only: from its /metrics), and
    # the worst counting only the time the server ran meanwhile (the rest: a core held by others).
    stall_ms: float = float("nan")
    stall_on_cpu_ms: float = float("nan")

    def statuses(self) -> str:
        """`200: n, 304: n, other: n`, leaving out zeros."""
        parts = [(k, v) for k, v in (("200", self.status_200), ("304", self.status_304), ("other", self.status_other)) if v]
        return ", ".join(f"{k}: {v}" for k, v in parts) or "none"


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's report (with `--latency`) and mix.lua's STATUS line."""
    percentiles = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _PERCENTILE.findall(output)}
    rps, total, status = _RPS.search(output), _TOTAL.search(output), _STATUS.search(output)
    if not rps or not total or len(percentiles) < 4:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors, sample, tail = _SOCKET_ERRORS.search(output), _OTHER.search(output), _TAIL.search(output)
    ok, not_modified, other = (int(x) for x in status.groups()) if status else (0, 0, 0)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        status_200=ok,
        status_304=not_modified,
        status_other=other,
        socket_errors=sum(int(x) for x in errors.groups()) if errors else 0,
        other_sample=sample.group(1).strip() if sample else "",
        p999_ms=int(tail.group(1)) / 1000 if tail else float("nan"),
        max_ms=int(tail.group(2)) / 1000 if tail else float("nan"),
    )


def wrk_command(base_url: str, paths_file: Path, seconds: int, connections: int, *, pin: bool) -> list[str]:
    """`wrk -t1 -cN -dSs --latency -s mix.lua URL -- PATHS`, on the client core when `pin`."""
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
        "-s", str(MIX_LUA), base_url, "--", str(paths_file),
    ]
    return pinned(argv, CLIENT_CORE if pin else None)


def run_wrk(base_url: str, paths_file: Path, seconds: int, connections: int, *, pin: bool = True) -> WrkResult:
    """One wrk run against `base_url` (127.0.0.1 only), bounded by its duration plus a margin."""
    if not base_url.startswith("http://127.0.0.1:"):
        raise ValueError("the benchmark only sends traffic to 127.0.0.1")
    done = subprocess.run(
        wrk_command(base_url, paths_file, seconds, connections, pin=pin),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


async def _get_each(port: int, paths: Sequence[str], tags: dict[str, str]) -> None:
    """GET `paths` one after another on one keep-alive connection, keeping each 200's ETag.

    A minimal HTTP/1.1 client: Content-Length bodies or none (304), which is all
    our servers send; anything else is an error rather than a silent guess.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in paths:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            if status != 304:
                if "content-length" not in headers:
                    raise RuntimeError(f"{path}: HTTP {status} without Content-Length")
                await reader.readexactly(int(headers["content-length"]))
            if status == 200 and "etag" in headers:
                tags[path] = headers["etag"]
    finally:
        writer.close()
        await writer.wait_closed()


def fetch_etags(base_url: str, paths: Sequence[str], connections: int = ETAG_FETCH_CONNECTIONS) -> dict[str, str]:
    """GET each distinct path once (this also warms every cache the server has) and keep its ETag."""
    if not base_url.startswith("http://127.0.0.1:"):
        raise ValueError("the benchmark only sends traffic to 127.0.0.1")
    port = int(base_url.rsplit(":", 1)[1])
    distinct = sorted(set(paths))
    tags: dict[str, str] = {}

    async def fetch_all() -> None:
        shares = [distinct[i::connections] for i in range(connections)]
        await asyncio.gather(*(_get_each(port, share, tags) for share in shares if share))

    asyncio.run(fetch_all())
    return tags
