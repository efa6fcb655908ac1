"""The API runs: three reference servers and ours, each under the same uvicorn settings, measured with wrk.

Pinned runs put the server (and the idle projector) on core 0 and wrk on core 1;
Redis and Postgres are the machine's and float. Each measured run of ours starts
a fresh server (cold: nothing in its memory), warms it up with the same load for
`warmup_s` (no path fetched beforehand), then measures; the rounds interleave
every server, and the table gives each one's median. The best case (every path
fetched once before, so nearly every poll is answered from process memory)
comes after, as extra rows.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import profiling, writer
from bench.config import BenchConfig
from bench.data import Names, request_mix, write_paths
from bench.http import WrkResult, fetch_etags, run_wrk, wrk_command
from bench.procs import (
    SERVER_CORE,
    Child,
    free_port,
    pinned,
    python,
    running,
    wait_http,
)

# uvicorn as our `api` command runs it: one worker, no access log, uvloop/httptools when installed.
_UVICORN = ("-m", "uvicorn", "--host", "127.0.0.1", "--workers", "1", "--no-access-log", "--log-level", "warning")


@dataclass(frozen=True)
class Server:
    """How to start one server under test."""

    key: str
    argv: tuple[str, ...]
    env: dict[str, str]
    ready_path: str

    def command(self, port: int) -> list[str]:
        """argv with the port filled in."""
        return [a.replace("{port}", str(port)) for a in self.argv]


def references(database_url: str, redis_url: str, prefix: str) -> list[Server]:
    """(a) bare Starlette, (b) one Redis GET, (c) the seed's Postgres queries."""
    probe = "/api/profile/bench_probe/status"
    return [
        Server("bare", (*python(*_UVICORN), "--port", "{port}", "bench.refs.bare:app"), {}, probe),
        Server(
            "naive",
            (*python(*_UVICORN), "--port", "{port}", "bench.refs.naive_redis:app"),
            {"REDIS_URL": redis_url, "PROFILE_STATUS_KEY_PREFIX": prefix},
            probe,
        ),
        Server(
            "seed",
            (*python(*_UVICORN), "--port", "{port}", "bench.refs.seed_pg:app"),
            {"DATABASE_URL": database_url},
            probe,
        ),
    ]


def ours(database_url: str, redis_url: str, prefix: str, workers: int = 1, key: str = "", **env: str) -> Server:
    """`profile-status api` itself, configured only through its environment (`env`: PROFILE_STATUS_* extras)."""
    return Server(
        key or f"ours{workers}",
        (*python("-m", "profile_status.cli", "api", "--host", "127.0.0.1", "--port", "{port}"), "--workers", str(workers)),
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PROFILE_STATUS_KEY_PREFIX": prefix, **env},
        "/healthz",
    )


@contextlib.contextmanager
def serving(server: Server, log_dir: Path, *, pin: bool) -> Iterator[tuple[Child, str]]:
    """The server, answering on 127.0.0.1, until the block ends."""
    port = free_port()
    argv = pinned(server.command(port), SERVER_CORE if pin else None)
    with running(server.key, argv, server.env, log_dir) as child:
        base_url = f"http://127.0.0.1:{port}"
        wait_http(child, base_url + server.ready_path, expect=None)
        yield child, base_url


def http_status(url: str) -> int:
    """The status code a GET of `url` answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def measure(cfg: BenchConfig, base_url: str, paths_file: Path, *, pin: bool) -> WrkResult:
    """A discarded warm-up run, then the measured one."""
    run_wrk(base_url, paths_file, cfg.warmup_s, cfg.connections, pin=pin)
    return run_wrk(base_url, paths_file, cfg.duration_s, cfg.connections, pin=pin)


@dataclass
class ApiRuns:
    """Every wrk result by run name, /readyz as our API saw it, and the API's profiles (Markdown) if taken."""

    all: dict[str, list[WrkResult]] = field(default_factory=dict)
    readyz: int = 0
    profiles: list[str] = field(default_factory=list)

    def add(self, key: str, result: WrkResult) -> None:
        """One more measured run of `key`."""
        self.all.setdefault(key, []).append(result)

    @property
    def results(self) -> dict[str, WrkResult]:
        """The median of each run's rounds (field by field)."""
        return {key: median_of(runs) for key, runs in self.all.items()}


def median_of(runs: Sequence[WrkResult]) -> WrkResult:
    """A result whose every figure is the median of the rounds' (counts summed)."""
    if len(runs) == 1:
        return runs[0]

    def med(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in runs))

    return replace(
        runs[0],
        requests_per_s=med("requests_per_s"), p50_ms=med("p50_ms"), p75_ms=med("p75_ms"), p90_ms=med("p90_ms"),
        p99_ms=med("p99_ms"), p999_ms=med("p999_ms"), max_ms=med("max_ms"), stall_ms=med("stall_ms"),
        stall_on_cpu_ms=med("stall_on_cpu_ms"),
        requests=sum(r.requests for r in runs), status_200=sum(r.status_200 for r in runs),
        status_304=sum(r.status_304 for r in runs), status_other=sum(r.status_other for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
    )


class Mixes:
    """A fresh request mix for each measured run (see `data.request_mix`), written for wrk."""

    def __init__(self, known: Names, count: int, work: Path) -> None:
        self.known, self.count, self.work = known, count, work
        self._runs = 0

    def next(self) -> tuple[list[str], Path]:
        """The paths of the next run and its wrk input file."""
        self._runs += 1
        paths = request_mix(self.known, self.count, run=f"r{self._runs}_")
        return paths, write_paths(self.work / f"paths-{self._runs}.txt", paths)


def _stalls_ms(base_url: str) -> tuple[float, float]:
    """The server's longest event-loop stall since its previous /metrics scrape, and the longest
    counting only its time on a CPU, in ms (NaN if not reported)."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:  # loopback only
            text = response.read().decode()
    except OSError:
        return float("nan"), float("nan")
    gauges = dict(line.split(maxsplit=1) for line in text.splitlines() if line.startswith("profile_status_api_event_loop_stall_max"))
    return tuple(  # type: ignore[return-value]
        float(gauges.get(f"profile_status_api_event_loop_stall_max_{name}seconds", "nan")) * 1000 for name in ("", "on_cpu_")
    )


def _prefetched(cfg: BenchConfig, url: str, mixes: Mixes, *, pin: bool) -> WrkResult:
    """The best case: one GET of every path first (this fills the process cache), then the run."""
    paths, paths_file = mixes.next()
    fetch_etags(url, paths)
    return measure(cfg, url, paths_file, pin=pin)


def _prefetched_304(cfg: BenchConfig, url: str, mixes: Mixes, *, pin: bool) -> WrkResult:
    """A fresh mix, every request carrying the ETag its path answered just before."""
    paths, _ = mixes.next()
    tags = fetch_etags(url, paths)
    return measure(cfg, url, write_paths(mixes.work / f"paths-{mixes._runs}-etag.txt", paths, tags), pin=pin)


@contextlib.contextmanager
def _writing(database_url: str, names: Sequence[str], rate: int, seconds: int) -> Iterator[None]:
    """A writer committing `rate` single-row changes a second, in a thread, for `seconds`."""
    if rate <= 0:
        yield
        return
    with ThreadPoolExecutor(1) as pool:
        writes = pool.submit(writer.paced, database_url, names[: rate * seconds], rate, seconds)
        yield
        writes.result(timeout=seconds + 30)


@dataclass(frozen=True)
class OursRun:
    """One configuration of ours measured cold: its environment, and the changes committed meanwhile."""

    key: str
    env: dict[str, str]
    writes_per_s: int = 0


def ours_runs(cfg: BenchConfig) -> list[OursRun]:
    """Ours as deployed (the process cache on), every poll through Redis, and on a moving queue."""
    return [
        OursRun("ours", {}),
        OursRun("ours_nocache", {"PROFILE_STATUS_LOCAL_CACHE": "false"}),
        *(OursRun(f"ours_{rate}w", {}, rate) for rate in cfg.api_write_rates),
    ]


def _ours_cold(cfg: BenchConfig, database_url: str, prefix: str, run: OursRun, mixes: Mixes, work: Path) -> WrkResult:
    """A fresh server: warmed up with the same load (and writes) for `warmup_s`, then measured."""
    _, paths_file = mixes.next()
    server = ours(database_url, cfg.redis_url, prefix, key=run.key, **run.env)
    with serving(server, work, pin=True) as (_, url):
        with _writing(database_url, mixes.known.active, run.writes_per_s, cfg.warmup_s + cfg.duration_s + 2):
            run_wrk(url, paths_file, cfg.warmup_s, cfg.connections, pin=True)
            _stalls_ms(url)  # the measured window starts here
            result = run_wrk(url, paths_file, cfg.duration_s, cfg.connections, pin=True)
            stall, on_cpu = _stalls_ms(url)
            return replace(result, stall_ms=stall, stall_on_cpu_ms=on_cpu)


def _profile(cfg: BenchConfig, pid: int, url: str, paths_file: Path, out: Path) -> profiling.Summary:
    """py-spy on our API during an extra (unmeasured) wrk run: `out` (raw stacks), then `out`.svg."""
    seconds = cfg.duration_s
    load = subprocess.Popen(
        wrk_command(url, paths_file, 2 * seconds + 3, cfg.connections, pin=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for fmt, path in (("raw", out), ("flamegraph", out.with_suffix(".svg"))):
            profiling.finish(profiling.record(pid, seconds, path, fmt), seconds + 30)
    finally:
        load.kill()
        load.wait()
    return profiling.summarize(out)


def _profiles(cfg: BenchConfig, pid: int, url: str, database_url: str, mixes: Mixes, out_dir: Path) -> list[str]:
    """Profiles of the idle-queue and the busy-queue poll paths, as Markdown."""
    lines: list[str] = []
    _, paths_file = mixes.next()
    lines += _profile(cfg, pid, url, paths_file, out_dir / "api.folded").lines("API, 1 worker, idle queue") + [""]
    paths, paths_file = mixes.next()
    rate = max(cfg.api_write_rates)
    with _writing(database_url, mixes.known.active, rate, 2 * cfg.duration_s + 3):
        summary = _profile(cfg, pid, url, paths_file, out_dir / "api-busy.folded")
    lines += summary.lines(f"API, 1 worker, moving queue ({rate} changes/s)") + [""]
    return lines


def run(cfg: BenchConfig, database_url: str, prefix: str, known: Names, work: Path, profile_dir: Path) -> ApiRuns:
    """The references and ours, cold, interleaved for `api_rounds` rounds, all pinned; then the best cases.

    The references run side by side (an idle server costs nothing) so that the
    rounds interleave every server: a burst of load from another tenant of the
    machine then hurts every server's figure a little rather than one server's a lot.
    """
    runs = ApiRuns()
    mixes = Mixes(known, cfg.paths, work)
    _, plain = mixes.next()
    with contextlib.ExitStack() as stack:
        references_ = {
            s.key: stack.enter_context(serving(s, work, pin=True))[1]
            for s in references(database_url, cfg.redis_url, prefix)
        }
        for _ in range(cfg.api_rounds):
            for key, reference_url in references_.items():
                runs.add(key, measure(cfg, reference_url, plain, pin=True))
            for run_ in ours_runs(cfg):
                runs.add(run_.key, _ours_cold(cfg, database_url, prefix, run_, mixes, work))
    # The best case, after: every path fetched once before the run.
    with serving(ours(database_url, cfg.redis_url, prefix, 1), work, pin=True) as (child, url):
        runs.readyz = http_status(url + "/readyz")
        runs.add("best", _prefetched(cfg, url, mixes, pin=True))
        runs.add("best_304", _prefetched_304(cfg, url, mixes, pin=True))
        if cfg.profile and profiling.available():
            runs.profiles = _profiles(cfg, child.pid, url, database_url, mixes, profile_dir)
    # Two workers cannot share one core usefully: nothing is pinned in this run.
    with serving(ours(database_url, cfg.redis_url, prefix, 2), work, pin=False) as (_, url):
        runs.add("best2", _prefetched(cfg, url, mixes, pin=False))
    return runs
