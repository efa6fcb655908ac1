"""Check that each direct requirement is installed at exactly its declared lower bound.

Run with the interpreter of the lowest-versions environment (built with
`uv pip install --resolution lowest-direct -e '.[test]'`). A lower bound that
the resolution does not reach (another requirement needs more) is a claim no
test backs: raise it to what is installed. Exits 1, listing each, when any
bound is not the installed version.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("test", "demo")


def lower_bound(requirement: Requirement) -> Version | None:
    """The version of the requirement's `>=` specifier, if it has one."""
    for spec in requirement.specifier:
        if spec.operator == ">=":
            return Version(spec.version)
    return None


def mismatches() -> list[str]:
    """One line per direct requirement whose installed version is not its lower bound."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in EXTRAS:
        texts += project["optional-dependencies"][extra]
    out = []
    for text in dict.fromkeys(texts):
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        bound = lower_bound(requirement)
        installed = Version(metadata.version(requirement.name))
        if bound is None:
            out.append(f"{text}: no lower bound (installed {installed})")
        elif installed != bound:
            out.append(f"{text}: installed {installed}, not the declared lower bound")
    return out


def main() -> int:
    """Print the outcome; 0 when every bound is what the resolution installed."""
    found = mismatches()
    for line in found:
        print(f"lowest-versions: {line}", file=sys.stderr)
    if found:
        return 1
    print("lowest-versions: every direct requirement is installed at its declared lower bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
