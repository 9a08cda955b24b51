"""Faults inside a training run on the tiny model: a NaN loss, out of memory, a full disk, a torn log line.

Each ends in one clear message (the CLI's `error: …`, exit 2), never a traceback, and leaves the
run resumable from its last good checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.training.test_train import config_for
from tunery.training.checkpoint import complete_checkpoints, latest_checkpoint, verify_checkpoint


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    from tunery.cli import main

    monkeypatch.setattr(sys, "argv", ["tunery", *args])
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return ended.value.code or 0, " ".join((out + err).split())


def logged_steps(run_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["step"] for row in rows if "loss" in row]


def test_a_nan_loss_stops_the_run_at_once_naming_the_step_and_what_to_change(
    tiny_model_dir, chat_files, tmp_path, capsys, monkeypatch
):
    config = config_for(tiny_model_dir, chat_files, tmp_path, max_steps=6)
    config["train"]["lr"] = 1e30  # the weights blow up after the first update
    code, shown = run_cli(["train", str(write_config(tmp_path, config)), "--quiet"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in shown
    assert "loss became nan at step 2 (batch of data lines [" in shown
    assert "lower train.lr (now 1e+30) or check those rows" in shown
    assert logged_steps(tmp_path / "run") == [1]  # nothing trained after the bad step
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("error", ["cuda", "cpu"])
def test_out_of_memory_fails_with_the_settings_to_lower(
    tiny_model_dir, chat_files, tmp_path, capsys, monkeypatch, error
):
    import torch

    import tunery.training.recipe as recipe

    real, calls = recipe.summed_loss, []

    def runs_out_on_the_third_pass(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            if error == "cuda":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise MemoryError()
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe, "summed_loss", runs_out_on_the_third_pass)
    config = config_for(tiny_model_dir, chat_files, tmp_path, max_steps=6)
    code, shown = run_cli(["train", str(write_config(tmp_path, config)), "--quiet"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in shown, shown
    assert "out of memory at step 3" in shown
    for setting in ("train.batch_size (now 4)", "train.max_batch_tokens", "data.max_length (now 64)"):
        assert setting in shown
    assert "train.gradient_checkpointing (now off)" in shown


def test_the_service_reports_out_of_memory_with_its_own_code():
    from tunery.jobs.runner import failure_reason

    message = "out of memory at step 3 (CUDA out of memory); lower train.batch_size (now 8), …"
    assert failure_reason({"code": "out_of_memory", "message": message}) == ("out_of_memory", message)


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str = "4m", mount: bool = True):
    """A size-limited tmpfs at `folder` ("tmpfs"), or None where mounting is not permitted (or not asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    mounted = subprocess.run(command if mount else ["false"], capture_output=True)
    try:
        yield "tmpfs" if mounted.returncode == 0 else None
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_leaving(folder: Path, free: int) -> None:
    """Fill the file system of `folder` until only `free` bytes are left."""
    import shutil

    left = shutil.disk_usage(folder).free - free
    with (folder / "filler").open("wb") as handle:
        while left > 0:
            chunk = min(left, 1 << 20)
            handle.write(b"\0" * chunk)
            left -= chunk


RESUME_UNDER_FILE_SIZE_LIMIT = """
import resource, signal, sys, tunery
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
from tunery.cli import main
sys.argv = ["tunery", "train", "--resume", sys.argv[1], "--set", "train.max_steps=4", "--quiet"]
main()
"""


@pytest.mark.parametrize("limit", ["tmpfs", pytest.param("RLIMIT_FSIZE", marks=pytest.mark.slow)])
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint_and_fails_clearly(
    tiny_model_dir, chat_files, tmp_path, capsys, monkeypatch, limit
):
    disk = tmp_path / "disk"
    with small_filesystem(disk, mount=limit == "tmpfs") as how:
        config = config_for(tiny_model_dir, chat_files, disk, max_steps=2, save_every=2, keep_checkpoints=5)
        import tunery

        run = tunery.train(config, quiet=True)
        first = latest_checkpoint(run.checkpoints_dir)
        checkpoint_bytes = sum(path.stat().st_size for path in first.iterdir())
        if how == "tmpfs":
            fill_leaving(disk, free=checkpoint_bytes // 2)  # room for log lines, not for a checkpoint
            args = ["train", "--resume", str(run.path), "--set", "train.max_steps=4", "--quiet"]
            code, shown = run_cli(args, capsys, monkeypatch)
        else:  # no mount permission: a per-process file size limit below the biggest checkpoint file
            biggest = max(path.stat().st_size for path in first.iterdir())
            proc = subprocess.run(
                [sys.executable, "-c", RESUME_UNDER_FILE_SIZE_LIMIT, str(run.path), str(biggest // 2)],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            code, shown = proc.returncode, " ".join((proc.stdout + proc.stderr).split())
        print(f"disk full simulated with: {how or 'RLIMIT_FSIZE'}")
        assert code == 2 and "Traceback" not in shown, shown
        assert "could not save checkpoint step-000004" in shown
        assert "Nothing half-written was kept and step-000002 is intact" in shown
        if how == "tmpfs":
            assert "the disk is full" in shown
        assert [p.name for p in run.checkpoints_dir.iterdir()] == ["step-000002"]  # no .tmp-, no step-4
        assert (
            verify_checkpoint(first) and json.loads((run.path / "run.json").read_text())["status"] == "failed"
        )
        (disk / "filler").unlink(missing_ok=True)
        resumed = tunery.train(resume=run.path, overrides=["train.max_steps=4"], quiet=True)
        assert resumed.record["status"] == "completed"
        assert [p.name for p in complete_checkpoints(run.checkpoints_dir)] == ["step-000004", "step-000002"]


def test_a_log_line_torn_by_a_kill_is_dropped_before_the_next_one(tmp_path):
    from tunery.run import Run

    run = Run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert run.history() == [{"step": 1, "loss": 2.0}]  # a reader skips the line being written
    run.log_metrics(step=2, loss=1.5)
    assert run.history() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def fake_checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint folder closed with its manifest, without training (no torch needed)."""
    from tunery.training.checkpoint import _write_manifest, checkpoint_name

    path = folder / checkpoint_name(step)
    path.mkdir(parents=True)
    (path / "state.json").write_text(json.dumps({"global_step": step}))
    (path / "optimizer.pt").write_bytes(b"x" * 64)
    _write_manifest(path)
    return path


def test_the_runner_lists_only_checkpoints_that_verify_newest_first(tmp_path):
    """A COMPLETE manifest over a damaged file is no checkpoint: no row, no event, no resume from it."""
    from sqlalchemy import select

    from tunery.jobs import runner
    from tunery.store import connect, session_factory
    from tunery.store.tables import Checkpoint, Event, Job

    run_dir = tmp_path / "jobs" / "x"
    for step in (2, 4, 6):
        fake_checkpoint(run_dir / "checkpoints", step)
    (run_dir / "checkpoints" / "step-000006" / "optimizer.pt").write_bytes(b"y" * 64)  # same size, new bytes
    sessions = session_factory(connect(f"sqlite:///{tmp_path / 'tunery.db'}"))
    with sessions.begin() as session:
        job = Job(
            project="p", model="m", training_file="file-x", seed=1, hyperparameters={}, method={}, config={},
            status="running", run_dir="jobs/x",
        )  # fmt: skip
        session.add(job)
        session.flush()
        runner._record_progress(session, job, run_dir, tmp_path)
        steps = session.scalars(select(Checkpoint.step).where(Checkpoint.job_id == job.id)).all()
        events = session.scalars(select(Event.message).where(Event.job_id == job.id)).all()
    assert sorted(steps) == [2, 4]
    assert [e for e in events if "Checkpoint" in e] == [
        "Checkpoint saved at step 2",
        "Checkpoint saved at step 4",
    ]
    assert runner.latest_checkpoint(run_dir / "checkpoints").name == "step-000004"  # the resume event's step
