"""`python -m bench [--quick] [--out FILE]`: run the benchmark, print its table and write it to FILE.

Two data sets, each in a database and a Redis key prefix of its own, both
removed at the end whatever happens:

1. the API data set (100,000 queue rows, 10,000 profiles): `resync` time and
   memory, the API against its three references with wrk (200s and 304s), then
   the projector's lag at 1,000 changes/s and its drain throughput;
2. active queues of 1,000 and 1,000,000 rows: `resync` of the big one, and the
   projector's cost per change on each.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import config, data, profiling, throughput
from bench import projector as proj
from bench.config import BenchConfig
from bench.http import wrk_available
from bench.procs import SERVER_CORE, pinning_available
from bench.report import API_ROWS, Report
from bench.subscriber import Subscription
from shared.redis_store.keys import Keys

PARTS = ("api", "scale", "partitions")
KIB = 1024


def _parser() -> argparse.ArgumentParser:
    admin_url, redis_url = config.env_urls()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 s wrk runs (well under a minute)")
    parser.add_argument("--out", type=Path, default=config.PROJECT_ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--database-url", default=admin_url, help="admin URL; bench databases are created there")
    parser.add_argument("--redis-url", default=redis_url)
    parser.add_argument("--profile", action="store_true", help="also profile the API and the projector with py-spy")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    return parser


@contextlib.contextmanager
def _stack(cfg: BenchConfig, work: Path) -> Iterator[tuple[str, str, proj.ProjectorProcess]]:
    """A migrated database, a prefix and a projector that has projected it (empty so far); all removed after."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(data.bench_database(cfg.database_url))
        prefix = stack.enter_context(data.bench_prefix(cfg.redis_url))
        projector = proj.ProjectorProcess(url, cfg.redis_url, prefix, work)
        stack.callback(projector.stop)
        projector.wait_projected()
        yield url, prefix, projector


def _memory(report: Report, label: str, resync: data.Resync) -> None:
    report.add(f"Redis memory per document, {label} (used_memory delta)", resync.used_memory_delta / resync.usernames,
               "B", f"< {KIB}")
    parts = sorted(resync.by_key.items(), key=lambda kv: -kv[1])
    split = ", ".join(f"{name} {size / resync.usernames:.0f}" for name, size in parts if size >= resync.usernames)
    report.add(f"Redis memory per document, {label} (MEMORY USAGE of the prefix)", resync.prefix_bytes / resync.usernames,
               "B", f"< {KIB}", note=f"{resync.prefix_keys:,} keys; B per username: {split}")


def _distinct(pool: Sequence[str], start: int, count: int) -> list[str]:
    """`count` distinct names from `pool` starting at `start` (wrapping; fewer if the pool is smaller)."""
    count = min(count, len(pool))
    return [pool[(start + i) % len(pool)] for i in range(count)]


def api_data_set(cfg: BenchConfig, report: Report, work: Path, results_dir: Path) -> None:
    """The API data set: resync, the API runs, then the projector's lag and throughput on it."""
    with _stack(cfg, work) as (url, prefix, projector):
        # Loaded after the projector started, with capture off: `resync` projects it (timed).
        data.load(url, cfg.queue_rows, cfg.profiles)
        resync = data.timed_resync(url, prefix, cfg.redis_url, cfg.queue_rows)
        report.add(f"resync, {cfg.queue_rows:,} queue rows + {cfg.profiles:,} profiles", resync.seconds, "s")
        _memory(report, f"{cfg.queue_rows:,}-row mix", resync)
        if cfg.profile and profiling.available():
            # Again, under py-spy (not timed): every document is unchanged now, the Python side is the same.
            folded = results_dir / "resync.folded"
            data.run_cli(["resync"], url, prefix, cfg.redis_url, wrap=profiling.under(folded))
            report.profiles += profiling.summarize(folded).lines(f"resync of {cfg.queue_rows:,} rows") + [""]
        lag_count = int(cfg.lag_rate * cfg.lag_s)
        known = data.names(url, max(cfg.paths, lag_count + 2 * cfg.drain_updates))

        # The idle projector shares the server's core: /readyz is real, the client core stays the client's.
        projector.pin({SERVER_CORE} if pinning_available() else None)
        runs = throughput.run(cfg, url, prefix, known, work, results_dir)
        projector.pin(None)
        report.api, report.api_rounds = runs.results, runs.all
        _api_figures(report, runs, cfg)
        report.profiles += runs.profiles

        with Subscription(cfg.redis_url, projector.channel) as sub:
            lag = proj.lag(url, sub, known.active[:lag_count], cfg.lag_rate, cfg.lag_s)
            drain_names = _distinct(known.active, lag_count, cfg.drain_updates)
            drain = proj.apply_rounds(url, sub, projector, [drain_names])
            if cfg.profile and profiling.available():
                more = _distinct(known.active, lag_count + cfg.drain_updates, cfg.drain_updates)
                summary = proj.profile_drain(url, sub, projector, more, results_dir / "projector.folded")
                report.profiles += summary.lines(f"projector, draining {len(more):,} changes") + [""]
        report.add(f"projector: lag at {cfg.lag_rate:,} changes/s, p50", lag.p50_ms, "ms", "<= 1000",
                   note=f"{lag.updates:,} updates at {lag.achieved_per_s:,.0f}/s; max {lag.max_ms:.0f} ms")
        report.add(f"projector: lag at {cfg.lag_rate:,} changes/s, p99", lag.p99_ms, "ms", "<= 1000",
                   note=f"{lag.missing} never published" if lag.missing else "")
        report.add(f"projector: sustained throughput ({drain.changes:,}-change backlog)", drain.per_s, "changes/s",
                   note=f"{drain.us_per_change:.0f} µs/change wall, {drain.cpu_us_per_change:.0f} µs projector CPU")


def throughput_label(key: str) -> str:
    """The table's name of an API run."""
    return API_ROWS.get(key, key)


def _api_figures(report: Report, runs: throughput.ApiRuns, cfg: BenchConfig) -> None:
    r = runs.results
    bare, naive, seed = r["bare"], r["naive"], r["seed"]
    ours, nocache = r["ours"], r["ours_nocache"]
    moving = r[f"ours_{max(cfg.api_write_rates)}w"]
    cold = [key for key in r if key.startswith("ours")]
    report.add("every poll through Redis (process cache off) / bare, requests/s", nocache.requests_per_s / bare.requests_per_s,
               "×", ">= 0.35")
    report.add("every poll through Redis / naive Redis GET, requests/s", nocache.requests_per_s / naive.requests_per_s, "×",
               ">= 1")
    report.add(f"moving queue ({max(cfg.api_write_rates)} changes/s) / bare, requests/s",
               moving.requests_per_s / bare.requests_per_s, "×", ">= 0.5")
    report.add("as deployed, cold / bare, requests/s", ours.requests_per_s / bare.requests_per_s, "×")
    worst_p99 = max(cold, key=lambda k: r[k].p99_ms)
    report.add("worst p99 of ours / bare p99", r[worst_p99].p99_ms / bare.p99_ms, "×", "<= 4",
               note=f"{throughput_label(worst_p99)}: {r[worst_p99].p99_ms:.1f} ms vs {bare.p99_ms:.1f} ms")
    worst_stall = max(cold, key=lambda k: r[k].stall_ms if r[k].stall_ms == r[k].stall_ms else -1.0)
    report.add("worst event-loop stall of ours under load", r[worst_stall].stall_ms, "ms", "<= 20",
               note=f"{throughput_label(worst_stall)} (the median round's; each run's own /metrics)")
    worst_on_cpu = max(cold, key=lambda k: r[k].stall_on_cpu_ms if r[k].stall_on_cpu_ms == r[k].stall_on_cpu_ms else -1.0)
    report.add("worst event-loop stall of ours, counting only the server's time on a CPU", r[worst_on_cpu].stall_on_cpu_ms,
               "ms", "<= 20", note=f"{throughput_label(worst_on_cpu)}: the rest of a stall is a core held by other processes")
    report.add("ours (cold) / seed, requests/s", ours.requests_per_s / seed.requests_per_s, "×", ">= 20")
    report.add("ours p99 / seed p50", ours.p99_ms / seed.p50_ms, "×", "< 1",
               note=f"{ours.p99_ms:.1f} ms vs {seed.p50_ms:.1f} ms")
    if "best" in r:
        report.add("best case (pre-fetched) / bare, requests/s", r["best"].requests_per_s / bare.requests_per_s, "×")
        report.add("best case: 304 / 200 requests/s", r["best_304"].requests_per_s / r["best"].requests_per_s, "×", ">= 1",
                   note=f"{r['best_304'].status_304:,} of {r['best_304'].requests:,} answered 304")
    if "best2" in r:
        report.add("best case: 2 workers / 1 worker, requests/s", r["best2"].requests_per_s / r["best"].requests_per_s, "×")
    report.notes += [
        (
            "Server and idle projector on core 0 (`taskset -c 0`), `wrk -t1 -c64 --latency` on core 1 (`taskset -c 1`);"
            " Redis and Postgres unpinned; the 2-worker best case unpinned."
            if pinning_available()
            else "Nothing pinned: fewer than 2 cores or no `taskset`."
        ),
        (
            f"Each run of ours starts a fresh server (nothing in its memory) and warms it with the same load for"
            f" {cfg.warmup_s} s (no path fetched before; unknown names miss and read through to Postgres), then"
            f" measures {cfg.duration_s} s. The references get the same warm-up."
        ),
        (
            f"{cfg.api_rounds} interleaved rounds; every figure is the median of the rounds"
            " (requests/s of every round: "
            + "; ".join(f"{key} {' / '.join(f'{x.requests_per_s:,.0f}' for x in rounds)}" for key, rounds in runs.all.items())
            + ")."
        ),
        "The naive endpoint answers 404 for unknown names (no document): its `other` answers.",
        (
            "Moving queue: a writer commits single-row changes (jobs picked up or put back: each document changes, and its entry moves from one queue set to the other) at"
            " the rate shown, during the warm-up and the measured run; the projector applies them meanwhile."
        ),
        (
            "Worst stall: the longest event-loop stall in the measured window, as the server's own monitor reports it"
            " (api/stalls.py: a 5 ms timer's lateness); beside it the worst counting only the server's own CPU time"
            " meanwhile (the process CPU clock), the rest being a core held by other processes."
        ),
        f"/readyz answered {runs.readyz} during the API runs (projector running, idle).",
    ]
    report.notes += [
        f"{throughput_label(key)}: {result.status_other:,} answers neither 200 nor 304, the first: `{result.other_sample}`"
        for key, result in r.items()
        if result.status_other and key != "naive"
    ]


@dataclass(frozen=True)
class Scale:
    """Per-change cost on one active queue size, and the resync that loaded it."""

    applied: proj.Applied
    resync: data.Resync


def _active_queue(cfg: BenchConfig, rows: int, work: Path) -> Scale:
    with _stack(cfg, work) as (url, prefix, projector):
        data.load(url, rows, 0, active_only=True)
        resync = data.timed_resync(url, prefix, cfg.redis_url, rows)
        active = data.names(url, cfg.round_updates * (cfg.rounds + 1)).active
        # A round's names are distinct; a queue too small for distinct rounds flips the same rows each round.
        rounds = [_distinct(active, i * cfg.round_updates, cfg.round_updates) for i in range(cfg.rounds + 1)]
        with Subscription(cfg.redis_url, projector.channel) as sub:
            proj.apply_rounds(url, sub, projector, rounds[:1])  # warm-up, not counted
            applied = proj.apply_rounds(url, sub, projector, rounds[1:])
    return Scale(applied, resync)


def scale(cfg: BenchConfig, report: Report, work: Path) -> None:
    """Per-change cost with a small and a big active queue; resync time and memory of the big one."""
    small = _active_queue(cfg, cfg.small_active, work)
    big = _active_queue(cfg, cfg.big_active, work)
    for label, s in ((f"{cfg.small_active:,}", small), (f"{cfg.big_active:,}", big)):
        report.add(f"projector: per change, {label} active rows", s.applied.us_per_change, "µs",
                   note=f"{s.applied.changes:,} changes in rounds of {cfg.round_updates:,}; "
                        f"{s.applied.cpu_us_per_change:.0f} µs projector CPU")
    report.add("per-change cost, big / small queue", big.applied.us_per_change / small.applied.us_per_change, "×",
               "<= 1.5")
    report.add(f"resync, {cfg.big_active:,} active rows", big.resync.seconds, "s", "< 60",
               note=f"{cfg.big_active / big.resync.seconds:,.0f} usernames/s")
    _memory(report, f"{cfg.big_active:,} active rows", big.resync)


def partitions(cfg: BenchConfig, report: Report, work: Path) -> None:
    """Throughput with 1, 2 and 4 projectors sharing `cfg.partitions` partitions: one backlog drained each time."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(data.bench_database(cfg.database_url))
        prefix = stack.enter_context(data.bench_prefix(cfg.redis_url))
        data.load(url, cfg.partition_rows, 0, active_only=True)
        data.timed_resync(url, prefix, cfg.redis_url, cfg.partition_rows)
        active = data.names(url, cfg.partition_updates * len(cfg.projector_counts)).active
        for i, count in enumerate(cfg.projector_counts):
            fleet = [
                proj.ProjectorProcess(url, cfg.redis_url, prefix, work, partitions=cfg.partitions, name=f"projector-{count}-{n}")
                for n in range(count)
            ]
            try:
                fleet[0].wait_projected()
                proj.wait_balanced(cfg.redis_url, prefix, fleet, cfg.partitions)
                with Subscription(cfg.redis_url, Keys(prefix).changes_channel) as sub:
                    names = _distinct(active, i * cfg.partition_updates, cfg.partition_updates)
                    applied = proj.apply_rounds(url, sub, fleet[0], [names])
            finally:
                for p in fleet:
                    p.stop()
            report.add(f"projector: throughput, {count} projector{'s' if count > 1 else ''}, {cfg.partitions} partitions",
                       applied.per_s, "changes/s",
                       note=f"{applied.changes:,}-change backlog over {cfg.partition_rows:,} active rows; "
                            "processes started and partitions shared before the clock starts")


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for; print the report and write it to --out (and .json beside it)."""
    args = _parser().parse_args(argv)
    make = config.quick if args.quick else config.full
    cfg = make(args.database_url, args.redis_url, profile=args.profile)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if unknown := parts - set(PARTS):
        print(f"bench: unknown parts: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if "api" in parts and not wrk_available():
        print("bench: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    settings = {k: v for k, v in asdict(cfg).items() if not k.endswith("_url")}
    report = Report(config={**settings, "parts": sorted(parts), "pinned": pinning_available()})
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    results_dir = args.out.resolve().parent
    results_dir.mkdir(parents=True, exist_ok=True)
    try:
        if "api" in parts:
            api_data_set(cfg, report, work, results_dir)
        if "scale" in parts:
            scale(cfg, report, work)
        if "partitions" in parts:
            partitions(cfg, report, work)
    except BaseException:
        print(f"bench: failed; the servers' logs are in {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    print(report.write(args.out))
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
