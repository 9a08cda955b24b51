"""DeepSpeed ZeRO on CPU: two gloo processes under ZeRO-2 and ZeRO-3 train the loss curve and the adapter one
process trains (a step where one rank has no examples included); checkpoints stay tunery's verified folders, a
ZeRO run resumes under ZeRO, kill -9 of both processes then the guide's resume ends where an uninterrupted run
does, and the adapter loads in plain PEFT. The commands are docs/deploy.md's.

The first DeepSpeed start on a machine builds a C++ op (about a minute, then cached)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.distributed.guide import guide_command
from tests.distributed.test_ddp import (
    assert_same_adapter,
    losses,
    resume_command,
    write_config,
)
from tests.service.conftest import wait_for
from tunery.config import load_config
from tunery.launch import Launch, check_strategy
from tunery.libraries import MissingExtra
from tunery.training.checkpoint import MANIFEST, verify_checkpoint
from tunery.training.zero import engine_config


def deepspeed_command(config_file: Path, run_name: str, stage: int) -> list[str]:
    """The guide's DeepSpeed command (ZeRO-3 there) at `stage`, for this test's config and run."""
    replace = {"config.yaml": str(config_file), "distributed.zero_stage=3": f"distributed.zero_stage={stage}"}
    command = guide_command("tunery train config.yaml", "distributed.strategy=deepspeed", replace=replace)
    return [*command, "--set", f"run_name={run_name}", "--quiet"]


def odd_files(tmp_path: Path) -> tuple[Path, Path]:
    """25 training rows: batches of 4 leave one of a single example, so a rank gets none of it and pads."""
    return write_jsonl(tmp_path / "train.jsonl", chat_rows(25)), write_jsonl(
        tmp_path / "valid.jsonl", chat_rows(6)
    )


def run_ok(command: list[str], timeout: float = 300) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_two_cpu_processes_trains_like_one_process_and_resumes(stage, tiny_model_dir, tmp_path):
    config_file, config = write_config(
        tmp_path, tiny_model_dir, odd_files(tmp_path), max_steps=9, save_every=3
    )
    one = tunery.train({**config, "run_name": "one"}, quiet=True)
    run_ok(deepspeed_command(config_file, "zero", stage))
    run_dir = one.path.parent / "zero"

    assert "rank 0 of 2 (deepspeed, gloo on cpu)" in (run_dir / "train.log").read_text()
    curve, reference = losses(run_dir), losses(one.path)
    assert [step for step, _ in curve] == list(range(1, 10))
    assert [loss for _, loss in curve] == pytest.approx([loss for _, loss in reference], abs=1e-4)
    assert_same_adapter(
        run_dir, one.path, atol=1e-4
    )  # weights, not only losses: a halved gradient shows here
    checkpoint = run_dir / "checkpoints" / "step-000009"
    listed = json.loads((checkpoint / MANIFEST).read_text())
    assert verify_checkpoint(checkpoint) and "zero_to_fp32.py" in listed
    assert {name.split("/")[0] for name in listed} >= {"deepspeed", "adapter_model.safetensors", "state.json"}
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))

    first_end = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    shutil.rmtree(checkpoint)
    shutil.rmtree(run_dir / "adapter")
    run_ok(resume_command(run_dir))
    assert "resumed from step-000007 at step 7" in (run_dir / "train.log").read_text()
    resumed_end = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    for name, tensor in first_end.items():
        torch.testing.assert_close(resumed_end[name], tensor, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_killing_both_zero_processes_mid_run_then_resuming_ends_where_an_uninterrupted_run_does(
    tiny_model_dir, chat_files, tmp_path
):
    steps = 24
    config_file, config = write_config(tmp_path, tiny_model_dir, chat_files, max_steps=steps, save_every=3)
    run_dir = tmp_path / "runs" / "killed"
    launcher = subprocess.Popen(deepspeed_command(config_file, "killed", 2), start_new_session=True)
    first = run_dir / "checkpoints" / "step-000003" / "COMPLETE"
    wait_for(first.exists, timeout=240, interval=0.02, what="the first checkpoint")
    processes = [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(recursive=True)]
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
    launcher.wait(30)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert max(step for step, _ in losses(run_dir)) < steps

    run_ok(resume_command(run_dir))
    assert "resumed from step-" in (run_dir / "train.log").read_text()
    assert {step for step, _ in losses(run_dir)} == set(range(1, steps + 1))
    straight = tunery.train({**config, "run_name": "straight"}, quiet=True)
    assert_same_adapter(run_dir, straight.path, atol=1e-4)
    loads_in_plain_peft(run_dir / "adapter", tiny_model_dir)


def loads_in_plain_peft(adapter: Path, base: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    saved = load_file(adapter / "adapter_model.safetensors")
    lora_a = next(name for name in saved if "lora_A" in name)
    loaded = dict(model.named_parameters())[lora_a.replace("lora_A.weight", "lora_A.default.weight")]
    torch.testing.assert_close(loaded.detach(), saved[lora_a])


class PeakRss:
    """The peak resident memory of every rank of a launch, sampled with psutil while it runs."""

    def __init__(self, launcher: subprocess.Popen):
        self.launcher, self.peaks, self.thread = (
            launcher,
            {},
            threading.Thread(target=self._watch, daemon=True),
        )
        self.thread.start()

    def _watch(self) -> None:
        while self.launcher.poll() is None:
            try:
                for child in psutil.Process(self.launcher.pid).children(recursive=True):
                    if "--resume" in child.cmdline() and "torch.distributed.run" not in child.cmdline():
                        self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)
            except psutil.Error:
                pass
            threading.Event().wait(0.2)

    def mib(self) -> list[int]:
        self.thread.join(5)
        return sorted(round(rss / 2**20) for rss in self.peaks.values())


@pytest.mark.slow
def test_lora_on_smollm2_under_zero2_on_two_processes_lowers_the_loss(tmp_path):
    examples = Path(__file__).parents[2] / "examples"
    shutil.copy(examples / "demo.yaml", tmp_path / "config.yaml")
    shutil.copytree(examples / "data", tmp_path / "data")
    settings = [
        "train.max_steps=6", "train.batch_size=4", "train.lr=1e-3", "train.warmup_ratio=0", "train.eval_every=6",
        "train.save_every=6", "data.max_length=128", "lora.dropout=0", f"output_dir={tmp_path / 'runs'}",
    ]  # fmt: skip
    peaks = {}
    for strategy in ("ddp", "deepspeed"):
        command = [
            *deepspeed_command(tmp_path / "config.yaml", strategy, 2),
            *[item for setting in settings for item in ("--set", setting)],
            "--set", f"distributed.strategy={strategy}",
        ]  # fmt: skip
        launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watch = PeakRss(launcher)
        _, stderr = launcher.communicate(timeout=600)
        assert launcher.returncode == 0, stderr[-3000:]
        peaks[strategy] = watch.mib()
        rows = losses(tmp_path / "runs" / strategy)
        assert len(rows) == 6 and sum(loss for _, loss in rows[-2:]) < 0.8 * sum(loss for _, loss in rows[:2])
    print(
        f"\nSmolLM2 LoRA, 2 CPU processes, peak RSS per process (MiB): ddp {peaks['ddp']}, ZeRO-2 {peaks['deepspeed']}"
    )


def test_the_zero_config_sums_gradients_clips_and_offloads_as_asked():
    two = engine_config(2, offload=True, max_grad_norm=0.5, world=4, dtype=torch.float32)
    assert two["gradient_allreduce_op"] == "sum" and two["gradient_clipping"] == 0.5
    assert two["managed_gradient_accumulation"] is False and two["train_batch_size"] == 4
    assert two["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload_param" not in two["zero_optimization"] and two["bf16"] == {"enabled": False}
    three = engine_config(3, offload=True, max_grad_norm=None, world=2, dtype=torch.bfloat16)
    assert "gradient_allreduce_op" not in three  # stage 3 refuses it: the loss is scaled by the world instead
    assert (
        three["zero_optimization"]["offload_param"]["device"] == "cpu" and three["gradient_clipping"] == 0.0
    )
    assert three["bf16"] == {"enabled": True}
    assert "offload_optimizer" not in engine_config(1, False, 1.0, 2, torch.float32)["zero_optimization"]


def test_deepspeed_without_its_extra_is_refused_in_one_line_before_anything_starts(monkeypatch):
    cfg = load_config(
        {"data": {"train": "t.jsonl"}, "distributed": {"strategy": "deepspeed", "zero_stage": 1}}
    )
    check_strategy(cfg, Launch(2))  # installed here: accepted
    monkeypatch.setattr("tunery.libraries.missing_packages", lambda extra: ["deepspeed"])
    with pytest.raises(MissingExtra) as refused:
        check_strategy(cfg, Launch(2))
    assert str(refused.value) == (
        "distributed.strategy=deepspeed needs the [deepspeed] extra: pip install 'tunery[deepspeed]' "
        "(missing: deepspeed)"
    )
    assert refused.value.code == "missing_extra"


def test_a_job_on_two_gpus_may_ask_for_deepspeed(tmp_path):
    from tunery.service.domain.jobs import check_batch_splits, job_config
    from tunery.service.schemas.jobs import Hyperparameters, JobCreate

    extension = {"distributed": {"strategy": "deepspeed", "zero_stage": 3, "offload": True}}
    request = JobCreate(model="smollm2-135m-instruct", training_file="file-x", tunery=extension)
    config = job_config(request, Hyperparameters(batch_size=4), "ftjob-x", tmp_path, "train.jsonl", None)
    assert config["distributed"] == {**config["distributed"], **extension["distributed"]}
    check_batch_splits(config, gpus=2)
    check_strategy(load_config(config), Launch(2))  # what the job's training process checks before torchrun
