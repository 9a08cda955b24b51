"""One run on 2 processes (gloo on CPU) behaves as the same config on 1: the same loss curve, the same
adapter, one writer; kill -9 of every process mid-run and the guide's resume command ends where an
uninterrupted run does. The commands are docs/deploy.md's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

import tunery
from tests.distributed.guide import guide_command
from tests.service.conftest import wait_for


def write_config(tmp_path: Path, model_dir: Path, files: tuple[Path, Path], **train) -> tuple[Path, dict]:
    train_file, valid_file = files
    config = {
        "model": str(model_dir),
        "data": {"train": str(train_file), "validation": str(valid_file), "max_length": 64},
        "lora": {
            "r": 4,
            "alpha": 8,
            "dropout": 0.0,
        },  # no dropout: ranks draw different masks than one process
        "train": {"batch_size": 4, "lr": 5e-3, "seed": 7, "warmup_ratio": 0.0, **train},
        "output_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, config


def train_command(config_file: Path, run_name: str) -> list[str]:
    command = guide_command(
        "tunery train config.yaml",
        "config.yaml --nproc-per-node 2",
        replace={"config.yaml": str(config_file)},
    )
    return [*command, "--set", f"run_name={run_name}", "--quiet"]


def resume_command(run_dir: Path) -> list[str]:
    return [*guide_command("tunery train --resume", replace={"runs/my-run": str(run_dir)}), "--quiet"]


def losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row["loss"]) for row in rows if "loss" in row]


def assert_same_adapter(run_dir: Path, reference_dir: Path, atol: float) -> None:
    ours = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    reference = load_file(reference_dir / "adapter" / "adapter_model.safetensors")
    assert ours.keys() == reference.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-3, atol=atol)


@pytest.mark.slow
def test_two_processes_make_the_loss_curve_and_adapter_of_one(tiny_model_dir, chat_files, tmp_path):
    config_file, config = write_config(tmp_path, tiny_model_dir, chat_files, max_steps=12, save_every=4)
    one = tunery.train({**config, "run_name": "one"}, quiet=True)
    done = subprocess.run(train_command(config_file, "two"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = one.path.parent / "two"

    curve_one, curve_two = losses(one.path), losses(two)
    assert [step for step, _ in curve_two] == list(range(1, 13))  # one line per step: rank 0 alone writes
    assert [loss for _, loss in curve_two] == pytest.approx([loss for _, loss in curve_one], abs=1e-4)
    assert curve_two[-1][1] < curve_two[0][1]
    assert_same_adapter(two, one.path, atol=1e-5)
    log = (two / "train.log").read_text()
    assert "rank 0 of 2 (ddp, gloo on cpu)" in log and "rank 1" not in log
    assert json.loads((two / "run.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-000008", "step-000012"]


@pytest.mark.slow
def test_killing_both_processes_mid_run_then_resuming_ends_where_an_uninterrupted_run_does(
    tiny_model_dir, chat_files, tmp_path
):
    steps = 30
    config_file, config = write_config(tmp_path, tiny_model_dir, chat_files, max_steps=steps, save_every=3)
    run_dir = tmp_path / "runs" / "killed"
    launcher = subprocess.Popen(train_command(config_file, "killed"), start_new_session=True)
    first = run_dir / "checkpoints" / "step-000003" / "COMPLETE"
    wait_for(first.exists, timeout=240, interval=0.02, what="the first checkpoint")
    processes = [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(recursive=True)]
    ranks = [p for p in processes if "--resume" in p.cmdline() and "torch.distributed.run" not in p.cmdline()]
    assert len(ranks) == 2, [p.cmdline() for p in processes]
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
    launcher.wait(30)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # killed before the end
    interrupted_at = max(step for step, _ in losses(run_dir))
    assert interrupted_at < steps

    done = subprocess.run(resume_command(run_dir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from step-" in (run_dir / "train.log").read_text()
    assert {step for step, _ in losses(run_dir)} == set(range(1, steps + 1))
    straight = tunery.train({**config, "run_name": "straight"}, quiet=True)
    assert_same_adapter(run_dir, straight.path, atol=1e-4)


@pytest.mark.slow
def test_a_rank_that_fails_on_bad_data_ends_the_launch_with_its_error_in_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not a list"}\n', encoding="utf-8")
    config_file, _ = write_config(tmp_path, tiny_model_dir, (bad, bad))
    done = subprocess.run(train_command(config_file, "bad"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    ours = " ".join(done.stderr[done.stderr.rindex("error: training on 2 processes") :].split())
    assert ours.startswith("error: training on 2 processes failed (DataError: "), done.stderr[-2000:]
    assert "line 1, field 'messages': must be a list of messages" in ours
    assert json.loads((tmp_path / "runs" / "bad" / "run.json").read_text())["status"] == "failed"
