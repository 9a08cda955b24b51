"""constraints.txt pins the whole tree `make setup` installs, so a fresh machine gets what CI tested."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonical(name): version for name, version in pins}


def test_every_installed_package_is_pinned_at_its_installed_version():
    pins = locked()
    unpinned, other = [], []
    for dist in importlib.metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name == "tunery":
            continue
        if name not in pins:
            unpinned.append(name)
        elif pins[name] != dist.version.split("+")[0]:
            other.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not unpinned, f"installed but not in constraints.txt (run `make lock`): {sorted(unpinned)}"
    assert not other, f"installed at another version than constraints.txt: {other}"


def test_the_lock_agrees_with_every_exact_pin_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    pins = locked()
    for requirement in requirements:
        if match := re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^;\s]+)", requirement.strip()):
            name, _, version = match.groups()
            assert pins.get(canonical(name)) == version, (
                f"{requirement}: lock has {pins.get(canonical(name))}"
            )


def test_setup_installs_with_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if re.search(r"pip (install|wheel)\b", line)]
    assert installs and all("$(LOCK)" in line or "wheel" in line for line in installs), installs
