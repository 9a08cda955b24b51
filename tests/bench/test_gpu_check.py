"""bench/gpu_check.py where no GPU is: it skips in one line, its comparisons are right, and its checks'
plumbing runs end to end when rehearsed on the CPU with the tiny llama (the CUDA paths themselves
need a GPU: `make gpu-check` there)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import chat_rows, write_jsonl

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_prints_one_line_and_exits_0():
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: SKIP, no CUDA"), lines


def test_loss_curves_within_tolerance_pass_and_the_worst_step_is_named(gpu_check):
    reference = [2.0, 1.8, 1.6, 1.5]
    assert gpu_check.compare_curves(reference, [2.02, 1.79, 1.62, 1.49], rtol=0.03) is None
    assert gpu_check.curve_gap(reference, [2.02, 1.79, 1.62, 1.49]) == (3, pytest.approx(0.0125))
    problem = gpu_check.compare_curves(reference, [2.0, 1.8, 1.7, 1.5], rtol=0.03)
    assert problem.startswith("step 3 loss 1.7000 against 1.6000 (6.2% > 3%)")


def test_a_curve_that_does_not_fall_or_has_a_nan_or_another_length_fails(gpu_check):
    assert "did not fall" in gpu_check.compare_curves([2.0, 2.0], [2.0, 2.0], rtol=0.03)
    assert "NaN" in gpu_check.compare_curves([2.0, 1.9], [2.0, float("nan")], rtol=0.03)
    assert "3 losses against the reference's 2" in gpu_check.compare_curves([2.0, 1.9], [2.0, 1.9, 1.8], 0.03)
    with pytest.raises(ValueError, match="cannot be compared"):
        gpu_check.curve_gap([], [])


def test_served_answers_must_be_equal_request_by_request(gpu_check):
    assert gpu_check.compare_answers(["a", "b"], ["a", "b"]) is None
    assert gpu_check.compare_answers(["a", "b"], ["a", "c"]) == "request 2: alone 'b', in the batch 'c'"
    assert gpu_check.compare_answers(["a"], ["a", "b"]) == "2 answers from the batch, 1 alone"


def test_any_fail_makes_the_exit_code_nonzero_and_skips_do_not(gpu_check):
    Result = gpu_check.Result
    assert gpu_check.exit_code([Result("a", "PASS", ""), Result("b", "SKIP", "no trl")]) == 0
    assert gpu_check.exit_code([Result("a", "PASS", ""), Result("b", "FAIL", "step 3")]) == 1
    assert Result("qlora", "SKIP", "no bitsandbytes", 1.4).line() == "SKIP qlora        no bitsandbytes (1 s)"


def test_a_check_runs_in_a_child_that_reports_back_or_is_killed_at_its_limit(gpu_check, tmp_path):
    skipped = gpu_check.run_child("serving", tmp_path, limit=120)  # no lora-bf16 adapters in tmp_path
    assert (skipped.status, skipped.detail) == ("SKIP", "needs the adapters the lora-bf16 check trains")
    killed = gpu_check.run_child("serving", tmp_path, limit=0.5)
    assert killed.status == "FAIL" and killed.detail.startswith("timed out after 0 s")


@pytest.fixture
def rehearsal(gpu_check, tiny_model_dir, tmp_path, monkeypatch):
    """The checks pointed at the tiny llama on the CPU in fp32, with the bench's data files."""
    import train_speed

    monkeypatch.setattr(gpu_check, "MODEL", str(tiny_model_dir))
    monkeypatch.setattr(train_speed, "MODEL", str(tiny_model_dir))
    monkeypatch.setattr(gpu_check, "GPU", "cpu")
    monkeypatch.setattr(gpu_check, "GPU_DTYPE", "float32")
    write_jsonl(tmp_path / "train.jsonl", chat_rows(64))
    write_jsonl(tmp_path / "valid.jsonl", chat_rows(16))
    return gpu_check, tmp_path


def test_rehearsed_on_the_cpu_the_lora_check_compares_curves_and_leaves_adapters_for_serving(rehearsal):
    gpu_check, workdir = rehearsal
    status, detail = gpu_check.check_lora_bf16(workdir)
    assert status == "PASS", detail
    assert "worst step" in detail and "0.0% from CPU fp32" in detail  # the same device: the same curve
    runs = json.loads((workdir / "lora-runs.json").read_text())
    status, detail = gpu_check.check_serving(workdir)
    assert status == "PASS", detail
    assert detail.startswith("12 requests (base + 2 adapters) in batches of up to 12 answer as alone")
    assert set(runs) == {"cpu", "gpu"}


def test_rehearsed_with_gloo_the_collectives_sum_a_real_lora_gradient(rehearsal):
    import torch
    import torch.distributed as dist

    gpu_check, workdir = rehearsal
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        status, detail = gpu_check._collectives_on_a_lora_step(torch.device("cpu"), workdir)
    finally:
        dist.destroy_process_group()
    assert status == "PASS", detail
    assert "sum_gradients over 28 LoRA gradients" in detail  # A and B of 7 projections in 2 layers


def test_rehearsed_the_speed_check_times_tunery_and_trl_on_the_same_rows(rehearsal):
    pytest.importorskip("trl", reason="TRL is in the bench extra: pip install -e '.[bench]'")
    gpu_check, workdir = rehearsal
    status, detail = gpu_check.check_speed_vs_trl(workdir)
    assert status in ("PASS", "FAIL") and "sup tok/s =" in detail and "(goal 1.5x:" in detail, detail
