"""The benchmark's table: API runs, figures against their targets, the setup they were measured on."""

from __future__ import annotations

import json
import math
import operator
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.config import PROJECT_ROOT
from bench.http import WrkResult

API_ROWS = {
    "bare": "bare Starlette, constant JSON",
    "naive": "naive endpoint: one redis-py `GET`",
    "seed": "seed: Postgres queries per poll",
    "ours": "**profile-status api** (cold start, as deployed)",
    "ours_nocache": "same, `PROFILE_STATUS_LOCAL_CACHE=false` (every poll through Redis)",
    "ours_10w": "same, 10 queue changes/s committed meanwhile",
    "ours_100w": "same, 100 queue changes/s committed meanwhile",
    "best": "best case: every path fetched once before (process memory)",
    "best_304": "best case, If-None-Match → 304",
    "best2": "best case, 2 workers (unpinned)",
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt,
}


@dataclass
class Figure:
    """One number, with its target when the issue names one (`op` and `bound`)."""

    name: str
    value: float
    unit: str = ""
    op: str = ""
    bound: float = 0.0
    note: str = ""

    @property
    def target(self) -> str:
        """The target as text, or empty."""
        return f"{self.op} {self.bound:g}" if self.op else ""

    @property
    def met(self) -> str:
        """yes / no / empty (no target)."""
        if not self.op or math.isnan(self.value):
            return ""
        return "yes" if _COMPARE[self.op](self.value, self.bound) else "**no**"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


@dataclass
class Report:
    """Everything one run measured, rendered as Markdown tables."""

    config: dict[str, object]
    api: dict[str, WrkResult] = field(default_factory=dict)
    # Every measured round of each API run (`api` holds the best of each).
    api_rounds: dict[str, list[WrkResult]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str = "", target: str = "", note: str = "") -> None:
        """A figure; `target` like `">= 0.8"`."""
        op, _, bound = target.partition(" ")
        self.figures.append(Figure(name, float(value), unit, op, float(bound) if bound else 0.0, note))

    def api_table(self) -> list[str]:
        """One row per wrk run, with its ratio to bare Starlette."""
        bare = self.api.get("bare")
        lines = [
            "| server | req/s | × bare | p50 ms | p99 ms | p99.9 ms | max ms | worst stall ms | of it on CPU ms | answers |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, label in API_ROWS.items():
            if key in self.api:
                r = self.api[key]
                ratio = r.requests_per_s / bare.requests_per_s if bare else float("nan")
                errors = f", socket errors: {r.socket_errors}" if r.socket_errors else ""
                lines.append(
                    f"| {label} | {_fmt(r.requests_per_s)} | {ratio:.2f} | {_fmt(r.p50_ms)} | {_fmt(r.p99_ms)} |"
                    f" {_fmt(r.p999_ms)} | {_fmt(r.max_ms)} | {_fmt(r.stall_ms)} | {_fmt(r.stall_on_cpu_ms)} | {r.statuses()}{errors} |"
                )
        return lines

    def figure_table(self) -> list[str]:
        """One row per figure, with its target and whether it was met."""
        lines = ["| figure | value | unit | target | met | note |", "|---|---:|---|---|---|---|"]
        lines += [f"| {f.name} | {_fmt(f.value)} | {f.unit} | {f.target} | {f.met} | {f.note} |" for f in self.figures]
        return lines

    def markdown(self) -> str:
        """The whole report."""
        out = [f"# profile-status benchmark ({'quick' if self.config.get('quick') else 'full'})", ""]
        out += [f"- {line}" for line in setup_lines()] + [""]
        if self.api:
            out += ["## API", ""] + self.api_table() + [""]
        out += ["## Figures", ""] + self.figure_table() + [""]
        if self.notes:
            out += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        if self.profiles:
            out += ["## Profiles", ""] + self.profiles + [""]
        return "\n".join(out)

    def write(self, path: Path) -> str:
        """The Markdown at `path`, and the same numbers as JSON beside it; returns the Markdown.

        Rendered once: the setup lines read the clock and the load average, so a second
        rendering for the terminal would not match the file.
        """
        markdown = self.markdown()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown)
        data = {
            "config": self.config,
            "api": {k: asdict(v) for k, v in self.api.items()},
            "api_rounds": {k: [asdict(r) for r in v] for k, v in self.api_rounds.items()},
            "figures": [asdict(f) for f in self.figures],
            "notes": self.notes,
        }
        path.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str))
        return markdown


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _command(argv: list[str]) -> str:
    """The first line a command prints ("" if none, "absent" if not installed)."""
    if not shutil.which(argv[0]):
        return "absent"
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=PROJECT_ROOT, timeout=10)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def setup_lines() -> list[str]:
    """What the numbers were measured on."""
    modified = _command(["git", "status", "--porcelain", "--untracked-files=no"]) not in ("", "absent")
    return [
        (
            f"date: {datetime.now(UTC).isoformat(timespec='seconds')}; "
            f"commit {_command(['git', 'rev-parse', '--short', 'HEAD'])}{' (work tree modified)' if modified else ''}"
        ),
        (
            f"machine: {len(os.sched_getaffinity(0))} cores ({_cpu_model()}), Python {platform.python_version()}; "
            f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        ),
        (
            f"uvicorn {_version('uvicorn')}, uvloop {_version('uvloop')}, httptools {_version('httptools')}, "
            f"starlette {_version('starlette')}, redis-py {_version('redis')}, hiredis {_version('hiredis')}, "
            f"psycopg {_version('psycopg')}"
        ),
        f"{_command(['wrk', '--version'])}",
    ]
