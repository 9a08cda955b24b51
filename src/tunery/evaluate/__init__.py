"""Evaluate a run against its base model on held-out data."""

from tunery.evaluate.compare import evaluate_run

__all__ = ["evaluate_run"]
