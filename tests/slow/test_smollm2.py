"""The real bundled SmolLM2-135M-Instruct: a few LoRA steps on the example data, and the loss falls."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunery

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.slow
def test_lora_on_smollm2_lowers_the_loss_in_a_few_steps(tmp_path):
    run = tunery.train(
        EXAMPLES / "demo.yaml",
        overrides=[
            "train.max_steps=8", "train.batch_size=4", "train.lr=1e-3", "train.warmup_ratio=0",
            "train.eval_every=8", "train.save_every=8", f"output_dir={tmp_path}", "run_name=slow",
        ],
        quiet=True,
    )  # fmt: skip
    losses = [row["loss"] for row in run.history() if "loss" in row]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.7 * sum(losses[:2]) / 2
    assert run.record["parameters"]["total"] > 130_000_000  # the real model, not a tiny one
    assert run.metrics["val_loss"] < losses[0]
