"""The commands of docs/deploy.md, as the tests run them: the guide is the one place they are written.

    guide_command("tunery train", "--nproc-per-node")  ->  [python, -m, tunery, train, config.yaml, ...]

A test names a command by its first words and a word it contains, swaps the guide's
placeholders (config.yaml, queue names) for its own, and runs it.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def guide_lines() -> list[str]:
    """Every command line in the guide's ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [
        line.split("  #")[0].strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def guide_command(start: str, containing: str = "", replace: dict[str, str] | None = None) -> list[str]:
    """The guide's one command starting with `start` and containing `containing`, as argv."""
    found = [line for line in guide_lines() if line.startswith(start) and containing in line]
    assert len(found) == 1, f"docs/deploy.md should have one `{start} … {containing}` command, has {found}"
    words = shlex.split(found[0])
    words = [(replace or {}).get(word, word) for word in words]
    if words[0] == "tunery":
        return [sys.executable, "-m", "tunery", *words[1:]]
    return words
