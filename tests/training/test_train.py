"""Training end to end on a tiny random llama: run files, metrics, resume, NaN stop, crash-safe checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tunery
from tunery.methods import run_files
from tunery.training.checkpoint import complete_checkpoints, latest_checkpoint
from tunery.training.recipe import TrainingDiverged


def config_for(model_dir: Path, files: tuple[Path, Path], out: Path, **train) -> dict:
    train_file, valid_file = files
    return {
        "model": str(model_dir),
        "data": {"train": str(train_file), "validation": str(valid_file), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "train": {"batch_size": 4, "lr": 5e-3, "seed": 7, "warmup_ratio": 0.0, **train},
        "output_dir": str(out),
        "run_name": "run",
    }


def adapter_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_a_run_writes_its_fixed_file_set_and_the_loss_falls(tiny_model_dir, chat_files, tmp_path):
    run = tunery.train(config_for(tiny_model_dir, chat_files, tmp_path, epochs=4), quiet=True)
    for name in run_files("lora"):
        assert (run.path / name).is_file(), name
    record = run.record
    assert record["status"] == "completed"
    assert record["data"]["sources"]["train"]["content_hash"]
    assert record["versions"]["peft"]
    history = run.history()
    losses = [row["loss"] for row in history if "loss" in row]
    assert len(losses) == 24  # 24 rows / batch 4 = 6 steps per epoch, 4 epochs
    assert sum(losses[-3:]) < sum(losses[:3])
    assert len([row for row in history if "val_loss" in row]) == 4  # one evaluation per epoch
    assert run.metrics["steps"] == 24


KILL_AFTER_SAVE = """
import os, sys, json, tunery.training.checkpoint as checkpoint
real = checkpoint.save_checkpoint
def save_then_die(folder, step, *args, **kwargs):
    real(folder, step, *args, **kwargs)
    if step == int(sys.argv[2]):
        os._exit(137)
checkpoint.save_checkpoint = save_then_die
import tunery.training.recipe as recipe
recipe.save_checkpoint = save_then_die
recipe.train(json.loads(sys.argv[1]), quiet=True)
"""


def kill_after_checkpoint(config: dict, step: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SAVE, json.dumps(config), str(step)], capture_output=True, text=True
    )
    assert proc.returncode == 137, proc.stderr


def test_resume_after_a_kill_gives_the_same_adapter_as_a_straight_run(tiny_model_dir, chat_files, tmp_path):
    straight = tunery.train(
        config_for(tiny_model_dir, chat_files, tmp_path / "a", max_steps=10, save_every=5), quiet=True
    )
    killed = config_for(tiny_model_dir, chat_files, tmp_path / "b", max_steps=10, save_every=5)
    kill_after_checkpoint(killed, step=5)
    resumed = tunery.train(resume=tmp_path / "b" / "run", quiet=True)
    a, b = adapter_weights(straight.path), adapter_weights(resumed.path)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    steps = [row["step"] for row in resumed.history() if "loss" in row]
    assert steps == list(range(1, 11))


def test_an_infinite_learning_rate_stops_the_run_with_the_step_and_a_hint(
    tiny_model_dir, chat_files, tmp_path
):
    config = config_for(tiny_model_dir, chat_files, tmp_path, max_steps=5)
    config["train"]["lr"] = float("inf")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 2 .*lower train.lr \(now inf\)"):
        tunery.train(config, quiet=True)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and "TrainingDiverged" in record["error"]


KILL_DURING_SAVE = """
import os, sys, tunery.training.checkpoint as checkpoint
real = checkpoint.write_checkpoint_files
def dies_midway(target, model, optimizer, scheduler, state):
    if state["global_step"] == 4:
        model.save_pretrained(target)  # half the files are on disk...
        os._exit(137)                  # ...when the process is killed
    real(target, model, optimizer, scheduler, state)
checkpoint.write_checkpoint_files = dies_midway
import json, tunery
tunery.train(json.loads(sys.argv[1]), quiet=True)
"""


def test_a_kill_during_a_checkpoint_save_resumes_from_the_previous_complete_one(
    tiny_model_dir, chat_files, tmp_path
):
    config = config_for(tiny_model_dir, chat_files, tmp_path, max_steps=6, save_every=2)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, json.dumps(config)], capture_output=True, text=True
    )
    assert proc.returncode == 137, proc.stderr
    folder = tmp_path / "run" / "checkpoints"
    assert (folder / ".tmp-step-000004").is_dir()  # the half-written one is there, but not taken
    assert [p.name for p in complete_checkpoints(folder)] == ["step-000002"]
    run = tunery.train(resume=tmp_path / "run", quiet=True)
    assert run.record["status"] == "completed"
    assert [row["step"] for row in run.history() if "loss" in row] == [1, 2, 3, 4, 3, 4, 5, 6]
    assert latest_checkpoint(folder).name == "step-000006"
    assert not (folder / ".tmp-step-000004").exists()


def test_a_damaged_checkpoint_is_not_resumed_from(tiny_model_dir, chat_files, tmp_path):
    run = tunery.train(
        config_for(tiny_model_dir, chat_files, tmp_path, max_steps=4, save_every=2), quiet=True
    )
    newest = latest_checkpoint(run.checkpoints_dir)
    (newest / "optimizer.pt").write_bytes(b"truncated")
    assert latest_checkpoint(run.checkpoints_dir).name == "step-000002"
