"""Sampling profiles with py-spy, and a short text summary of where the time went.

py-spy's `raw` output is one collapsed stack a line (`frame;frame;... count`,
each frame `function (file:line)`). The summary reports, as a share of all
samples, the functions with the most *self* time and, for the project's own
code, the most *inclusive* time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT_PACKAGES = ("api/", "shared/", "projector/", "profile_status/")
# Entry points: in every sample, so they say nothing about where the time goes.
_ENTRY_FILES = ("profile_status/cli.py",)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def available() -> bool:
    """py-spy is installed (`pip install py-spy`)."""
    return shutil.which("py-spy") is not None


def record(pid: int, seconds: int, out: Path, fmt: str = "raw") -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` into `out` (`raw` or `flamegraph`); the caller waits."""
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--format", fmt, "--output", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def under(out: Path) -> list[str]:
    """argv prefix that runs a command under py-spy (its child processes too: `resync`'s workers), raw stacks to `out`."""
    return ["py-spy", "record", "--subprocesses", "--format", "raw", "--output", str(out), "--"]


def finish(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait for a recording; kill it if it overruns, and say why it failed."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("py-spy did not finish in time") from None
    if proc.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    return f"{match['func']} ({match['file']})" if match else frame.strip()


def _package(name: str) -> str:
    """`uvicorn` for `send (uvicorn/protocols/http/httptools_impl.py)`; a stdlib module by its name."""
    file = name.rpartition(" (")[2].rstrip(")")
    top = file.split("/", 1)[0] if "/" in file else file.removesuffix(".py")
    return "python" if top.startswith("<") else top


@dataclass(frozen=True)
class Summary:
    """Shares of samples: the top self-time functions, and the top inclusive ones of our own code."""

    samples: int
    self_top: list[tuple[str, float]]
    ours_top: list[tuple[str, float]]
    packages: list[tuple[str, float]]

    def lines(self, title: str) -> list[str]:
        """Markdown lines for BENCHMARKS.md and the results file."""
        split = ", ".join(f"{name} {share:.0f}%" for name, share in self.packages if share >= 1)
        out = [f"**{title}** ({self.samples} samples). Self time by package: {split}.", ""]
        out += ["| self % | function |", "|---:|---|"]
        out += [f"| {share:.1f} | `{name}` |" for name, share in self.self_top]
        out += ["", "| inclusive % | our function |", "|---:|---|"]
        out += [f"| {share:.1f} | `{name}` |" for name, share in self.ours_top]
        return out


def summarize(folded: Path, top: int = 12) -> Summary:
    """Read py-spy's raw output and rank functions by self and (our code) inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for name in set(frames):
            if any(f"({pkg}" in name for pkg in PROJECT_PACKAGES) and not any(e in name for e in _ENTRY_FILES):
                inclusive[name] += count
    share = 100.0 / total if total else 0.0
    return Summary(
        samples=total,
        self_top=[(name, n * share) for name, n in own.most_common(top)],
        ours_top=[(name, n * share) for name, n in inclusive.most_common(top)],
        packages=[(name, n * share) for name, n in packages.most_common()],
    )


def main(argv: list[str]) -> int:
    """`python -m bench.profiling FILE...`: the summary of py-spy raw files, as Markdown."""
    for name in argv:
        print("\n".join(summarize(Path(name)).lines(name)), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
