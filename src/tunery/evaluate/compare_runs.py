"""Runs side by side: the config keys that differ, their metrics, and their curves overlaid.

    comparison = compare_runs(["runs/r8", "runs/r16"])
    comparison.config_differences  # {"lora.r": [8, 16], ...}
    plot_runs(["runs/r8", "runs/r16"], "compare.png")

This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunery.evaluate.results import load_evaluations
from tunery.run import Run

TRAINING_METRICS = (
    "train_loss",
    "val_loss",
    "best_val_loss",
    "best_step",
    "steps",
    "train_seconds",
    "tokens_per_s",
)
EVAL_METRICS = ("perplexity", "general_perplexity", "exact_match", "rougeL", "bleu", "chrf")


@dataclass
class RunComparison:
    names: list[str]
    config_differences: dict[str, list]  # dotted config key -> value in each run
    metrics: dict[str, list]  # metric -> value in each run (None where a run lacks it)


def compare_runs(paths: Sequence[str | Path]) -> RunComparison:
    runs = [Run.open(path) for path in paths]
    configs = [
        flatten(yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8"))) for run in runs
    ]
    keys = sorted(set().union(*configs))
    differences = {
        key: [config.get(key) for config in configs]
        for key in keys
        if len({repr(config.get(key)) for config in configs}) > 1 and key != "run_name"
    }
    rows = [run_metrics(run) for run in runs]
    names = sorted(set().union(*rows), key=lambda name: _metric_order(name))
    return RunComparison(
        [run.name for run in runs], differences, {n: [row.get(n) for row in rows] for n in names}
    )


def run_metrics(run: Run) -> dict:
    """A run's training metrics and, from its newest evaluation, the tuned model's scores as `eval.<name>`."""
    metrics = {key: run.metrics.get(key) for key in TRAINING_METRICS if run.metrics.get(key) is not None}
    evaluations = load_evaluations(run.path)
    if evaluations:
        newest = next(iter(evaluations.values()))
        scores = newest.get("tuned") or {}
        metrics |= {f"eval.{key}": scores[key] for key in EVAL_METRICS if scores.get(key) is not None}
    return metrics


def plot_runs(paths: Sequence[str | Path], out: str | Path) -> Path:
    from tunery.evaluate.plots import runs_overlaid

    runs = [Run.open(path) for path in paths]
    out = Path(out)
    out.write_bytes(runs_overlaid({run.name: run.history() for run in runs}))
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"lora": {"r": 8}} -> {"lora.r": 8}"""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _metric_order(name: str) -> tuple[int, str]:
    order = [*TRAINING_METRICS, *(f"eval.{key}" for key in EVAL_METRICS)]
    return (order.index(name), name) if name in order else (len(order), name)
