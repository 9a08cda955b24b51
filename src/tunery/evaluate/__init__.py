"""Evaluate runs: base versus tuned on held-out data, run against run, and an HTML report.

    from tunery.evaluate import evaluate_run, compare_runs, write_report
    evaluate_run("runs/demo", "test.jsonl", checks=["json"])   # -> runs/demo/eval/test/
    compare_runs(["runs/a", "runs/b"]).config_differences
    write_report("runs/demo")                                   # -> runs/demo/report.html
    audit_run("runs/demo").flagged()                            # per-row loss audit -> runs/demo/audit/training/

Names load on first use, so importing this package does not import torch.
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "evaluate_run": "tunery.evaluate.compare",
    "Evaluation": "tunery.evaluate.compare",
    "compare_runs": "tunery.evaluate.compare_runs",
    "plot_runs": "tunery.evaluate.compare_runs",
    "write_report": "tunery.evaluate.report",
    "audit_run": "tunery.evaluate.audit",
    "classification_scores": "tunery.tasks.label_scores",
    "corpus_scores": "tunery.evaluate.metrics",
    "parse_check": "tunery.evaluate.checks",
    "load_evaluations": "tunery.evaluate.results",
    "load_examples": "tunery.evaluate.results",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'tunery.evaluate' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
