"""FSDP2 on CPU: two gloo processes shard the tiny llama per decoder layer and train the curve one
process trains; the adapter rank 0 gathers and writes is the one-process adapter; a run resumed from
an earlier checkpoint (whole weights and optimizer state, re-sharded on load) ends where it did."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file

import tunery
from tests.distributed.test_ddp import (
    assert_same_adapter,
    losses,
    resume_command,
    train_command,
    write_config,
)


def val_losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["val_loss"] for row in rows if "val_loss" in row]


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_trains_like_one_process(tiny_model_dir, chat_files, tmp_path):
    config_file, config = write_config(tmp_path, tiny_model_dir, chat_files, max_steps=8, save_every=4)
    one = tunery.train({**config, "run_name": "one"}, quiet=True)
    command = [*train_command(config_file, "fsdp"), "--set", "distributed.strategy=fsdp"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = one.path.parent / "fsdp"

    assert "rank 0 of 2 (fsdp, gloo on cpu)" in (run_dir / "train.log").read_text()
    assert [loss for _, loss in losses(run_dir)] == pytest.approx(
        [loss for _, loss in losses(one.path)], abs=1e-4
    )
    assert val_losses(run_dir) == pytest.approx(val_losses(one.path), abs=1e-4)
    # Loose on single weights: FSDP runs the whole forward, not the chunked loss, so sums differ in the last
    # bits, and Adam turns a near-zero gradient's last bits into a step of up to lr (5e-3).
    assert_same_adapter(run_dir, one.path, atol=2e-3)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000006", "step-000008"]

    first_end = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    shutil.rmtree(run_dir / "checkpoints" / "step-000008")
    shutil.rmtree(run_dir / "adapter")
    done = subprocess.run(resume_command(run_dir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from step-000006 at step 6" in (run_dir / "train.log").read_text()
    resumed_end = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    for name, tensor in first_end.items():
        torch.testing.assert_close(resumed_end[name], tensor, rtol=1e-4, atol=1e-6)
