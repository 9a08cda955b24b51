"""Overfitting: validation loss rising while training loss falls is recorded, and load_best keeps the best adapter."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import tunery
from tests.conftest import write_jsonl
from tunery.training.overfitting import evaluation_points, overfitting_warning


def history(train: list[float], val: list[float]) -> list[dict]:
    """One optimiser step and one evaluation per epoch, as the loop logs them."""
    rows = []
    for step, (loss, val_loss) in enumerate(zip(train, val, strict=True), start=1):
        rows += [{"step": step, "loss": loss}, {"step": step, "val_loss": val_loss}]
    return rows


def test_validation_rising_twice_while_training_falls_is_overfitting():
    warning = overfitting_warning(history([3.0, 2.5, 2.0, 1.5], [2.9, 2.6, 2.7, 2.8]), patience=2)
    assert warning.startswith(
        "overfitting: validation loss rose 2 evaluations in a row (2.6000 at step 2 -> "
    )


@pytest.mark.parametrize(
    ("train", "val"),
    [
        ([3.0, 2.5, 2.0, 1.5], [2.9, 2.6, 2.5, 2.4]),  # both falling: learning
        ([3.0, 2.5, 2.0, 1.5], [2.9, 2.6, 2.7, 2.65]),  # one rise is noise, not a trend
        ([1.0, 1.5, 2.0, 2.5], [2.9, 3.0, 3.1, 3.2]),  # both rising: diverging, not overfitting
        ([3.0, 2.5], [2.9, 3.0]),  # too few evaluations to tell
    ],
)
def test_other_shapes_are_not_overfitting(train, val):
    assert overfitting_warning(history(train, val), patience=2) is None


def test_training_loss_per_evaluation_is_the_mean_since_the_previous_one_and_a_resumed_step_counts_once():
    rows = [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 2.0}, {"step": 2, "val_loss": 3.0}]
    rows += [
        {"step": 3, "loss": 9.0},
        {"step": 3, "loss": 1.0},
        {"step": 4, "loss": 1.0},
        {"step": 4, "val_loss": 2.5},
    ]
    assert evaluation_points(rows) == [(2, 3.0, 3.0), (4, 2.5, 1.0)]


def rows(answers: list[str]) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": f"item {i}"}, {"role": "assistant", "content": answer}]}
        for i, answer in enumerate(answers)
    ]


def test_a_tiny_set_trained_many_epochs_warns_stops_and_keeps_the_best_adapter(tiny_model_dir, tmp_path):
    train = write_jsonl(
        tmp_path / "t.jsonl", rows(["quick brown fox", "lazy dog 7", "capital of France", "hello world 3"])
    )
    valid = write_jsonl(
        tmp_path / "v.jsonl", rows(["lazy fox 1", "brown dog", "France hello", "world quick 9"])
    )
    run = tunery.train(
        {
            "model": str(tiny_model_dir),
            "data": {"train": str(train), "validation": str(valid), "max_length": 64},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "train": {"batch_size": 4, "lr": 1e-2, "epochs": 30, "seed": 7, "warmup_ratio": 0.0,
                      "scheduler": "constant", "early_stopping_patience": 2, "load_best": True},
            "output_dir": str(tmp_path / "runs"),
            "run_name": "overfit",
        },
        quiet=True,
    )  # fmt: skip
    # Validation loss falls to step 5, then rises at 6 and 7 while training loss keeps falling.
    val = [row["val_loss"] for row in run.history() if "val_loss" in row]
    assert min(val) == val[4] < val[5] < val[6]
    metrics = run.metrics
    assert (metrics["best_step"], metrics["overfitting_step"], metrics["steps"]) == (5, 7, 7)
    assert metrics["stopped_early"] and metrics["adapter_step"] == 5
    (warning,) = run.record["warnings"]
    assert warning["step"] == 7 and warning["kind"] == "overfitting"
    assert [row["warning"] for row in run.history() if "warning" in row] == [warning["message"]]
    assert json.loads((run.path / "run.json").read_text())["warnings"] == [warning]

    final = load_file(run.path / "adapter" / "adapter_model.safetensors")
    best = load_file(run.checkpoints_dir / "step-000005" / "adapter_model.safetensors")
    last = load_file(run.checkpoints_dir / "step-000007" / "adapter_model.safetensors")
    for name in best:
        torch.testing.assert_close(final[name], best[name])
    assert any(not torch.equal(final[name], last[name]) for name in last)
