"""Where evaluations are kept in a run directory, so `tunery eval` writes what the HTML report reads.

    runs/<run>/eval/<name>/
      metrics.json     summary: data file, example count, base and tuned scores, settings
      examples.jsonl   one line per example: prompt, reference, base and tuned output, scores

`name` is the evaluated data file's stem (`valid`, `test`), so evaluating the
same file again replaces its results. This module imports no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunery.files import write_atomic

METRICS_FILE = "metrics.json"
EXAMPLES_FILE = "examples.jsonl"


def eval_dir(run_path: str | Path, name: str) -> Path:
    return Path(run_path) / "eval" / name


def save_evaluation(run_path: str | Path, name: str, summary: dict, examples: list[dict]) -> Path:
    folder = eval_dir(run_path, name)
    write_atomic(folder / METRICS_FILE, json.dumps(summary, indent=2, default=str))
    write_atomic(folder / EXAMPLES_FILE, "".join(json.dumps(row, default=str) + "\n" for row in examples))
    return folder


def load_evaluations(run_path: str | Path) -> dict[str, dict]:
    """Every stored evaluation of a run: name -> summary, newest first."""
    files = sorted(
        (Path(run_path) / "eval").glob(f"*/{METRICS_FILE}"), key=lambda f: f.stat().st_mtime, reverse=True
    )
    return {file.parent.name: json.loads(file.read_text(encoding="utf-8")) for file in files}


def load_examples(run_path: str | Path, name: str) -> list[dict]:
    file = eval_dir(run_path, name) / EXAMPLES_FILE
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
