"""Pinned losses: the real recipe on the tiny random llama, 5 steps, exact values on CPU.

The values were recorded from the recipe before it was split into set-up, loop and finish
(issue #16); they hold the data order, the loss, the optimiser and the method hooks
(progressive's parameter groups and unfreezing) to what they were. A change that moves
them is a change in training, and has to say so here.
"""

from __future__ import annotations

import pytest

import tunery
from tests.conftest import chat_rows, write_jsonl

CASES = {
    "lora-packed": (
        {},
        [5.927486, 5.919787, 5.915492, 5.904741, 5.892637],
        [5.903309],
    ),
    "lora-grouped-accum-eval": (
        {"train": {"batching": "grouped", "grad_accum": 2, "eval_every": 2}},
        [5.9212, 5.918595, 5.920547, 5.904452, 5.904332],
        [5.914008, 5.907543, 5.903621, 5.902444],
    ),
    "progressive": (
        {"method": "progressive", "freeze": {"unfreeze_every": 2, "lr_decay": 0.5}},
        [5.927486, 5.917168, 5.908318, 5.889679, 5.874481],
        [5.883094],
    ),
}


def pinned_config(model_dir, tmp_path, extra: dict) -> dict:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(24))
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(6))
    config = {
        "model": str(model_dir),
        "data": {"train": str(train), "validation": str(valid), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"batch_size": 4, "lr": 5e-3, "seed": 7, "warmup_ratio": 0.0, "max_steps": 5},
        "output_dir": str(tmp_path / "runs"),
        "run_name": "run",
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.mark.parametrize("case", list(CASES))
def test_five_steps_give_the_pinned_losses(case, tiny_model_dir, tmp_path):
    extra, train_losses, val_losses = CASES[case]
    run = tunery.train(pinned_config(tiny_model_dir, tmp_path, extra), quiet=True)
    history = run.history()
    assert [row["loss"] for row in history if "loss" in row] == pytest.approx(train_losses, abs=1e-5)
    assert [row["val_loss"] for row in history if "val_loss" in row] == pytest.approx(val_losses, abs=1e-5)
