"""The CUDA paths on one NVIDIA GPU, each checked against a CPU reference, in under 8 minutes.

    make gpu-check                                        # = .venv/bin/python bench/gpu_check.py
    .venv/bin/python bench/gpu_check.py --only lora-bf16 serving

Each check runs on SmolLM2-135M in a process of its own with its own time limit (a hung
kernel or NCCL call cannot stall the rest), and prints one line, PASS, FAIL or SKIP with the
reason; the script exits 1 when any check FAILs. Where no CUDA GPU exists it prints one line
and exits 0, so `make gpu-check` can run anywhere.

  lora-bf16     LoRA in bf16 on packed rows with per-example SDPA attention (and flash-attention's
                varlen kernel where flash_attn is installed): the loss curve of a few steps against
                the same run in fp32 on the CPU (dropout 0, so both draw no masks)
  qlora         4-bit NF4 base (bitsandbytes) with the paged 8-bit AdamW, against QLoRA on the CPU
                (bitsandbytes' CPU kernels, plain AdamW)
  serving       grouped multi-LoRA serving: the base and two adapters in one batch answer exactly
                as each request alone (greedy)
  ddp-nccl      torchrun with one process (world size 1): tunery's NCCL collectives (all_sum,
                all_max, the bucketed gradient sum) on a real LoRA backward. At world size 1 tunery's
                own set-up runs without a process group, so the check calls them directly
  deepspeed     bench/gpu_check_deepspeed.py (ZeRO-2 on one GPU) against the same run on the CPU
  speed-vs-trl  supervised tokens/s of tunery and TRL's SFTTrainer on the same rows, both bf16 and
                padding-free (Liger kernels for TRL where installed), at held-out loss within 2%;
                the goal (1.5x TRL) is printed, not enforced
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MODEL = "smollm2-135m-instruct"
TOTAL_S = 480  # every check together
STEPS = 6  # optimiser steps per training check: enough for a falling curve, seconds on a GPU
CURVE_RTOL = (
    0.04  # bf16 against fp32 on the same steps (docs/benchmarks.md: bf16 costs ~1.5% of held-out loss)
)
QLORA_RTOL = 0.05  # the 8-bit optimiser and bf16 compute against fp32 AdamW on the same NF4 weights
SPEED_GOAL = 1.5  # tunery's supervised tokens/s over TRL's on the same GPU
GPU = "cuda"  # where the checks train and serve (tests/bench rehearses them on "cpu" with a tiny model)
GPU_DTYPE = "bfloat16"  # what tunery's model.dtype=auto picks there


@dataclass(frozen=True)
class Result:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.status:4s} {self.name:12s} {self.detail} ({self.seconds:.0f} s)"


# --- pure helpers (tests/bench/test_gpu_check.py) --------------------------------------------


def curve_gap(reference: Sequence[float], candidate: Sequence[float]) -> tuple[int, float]:
    """(step, relative difference) of the step where `candidate` is furthest from `reference`."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"curves of {len(reference)} and {len(candidate)} steps cannot be compared")
    gaps = [abs(c - r) / abs(r) for r, c in zip(reference, candidate, strict=True)]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return worst + 1, gaps[worst]


def compare_curves(reference: Sequence[float], candidate: Sequence[float], rtol: float) -> str | None:
    """Why the candidate's loss curve does not match the reference's; None when it does."""
    if len(reference) != len(candidate):
        return f"{len(candidate)} losses against the reference's {len(reference)}"
    if any(value != value for value in candidate):  # NaN
        return f"a NaN loss: {list(candidate)}"
    step, gap = curve_gap(reference, candidate)
    if gap > rtol:
        return f"step {step} loss {candidate[step - 1]:.4f} against {reference[step - 1]:.4f} ({100 * gap:.1f}% > {100 * rtol:.0f}%)"
    if candidate[-1] >= candidate[0]:
        return f"the loss did not fall ({candidate[0]:.4f} -> {candidate[-1]:.4f})"
    return None


def compare_answers(alone: Sequence[str], together: Sequence[str]) -> str | None:
    """Why answers served in one batch differ from the same requests served alone; None when equal."""
    if len(alone) != len(together):
        return f"{len(together)} answers from the batch, {len(alone)} alone"
    for index, (one, many) in enumerate(zip(alone, together, strict=True)):
        if one != many:
            return f"request {index + 1}: alone {one[:60]!r}, in the batch {many[:60]!r}"
    return None


def exit_code(results: Sequence[Result]) -> int:
    return 1 if any(result.status == "FAIL" for result in results) else 0


def no_gpu_reason() -> str | None:
    """Why there is no CUDA GPU to check, or None when there is one."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"no CUDA: torch {torch.__version__} is a CPU-only build"
    return f"no CUDA GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda})"


# --- the parent: one child process per check --------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), help="run these checks alone")
    parser.add_argument("--check", choices=list(CHECKS), help=argparse.SUPPRESS)
    parser.add_argument("--nccl-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nccl_worker:
        return nccl_worker(args.workdir)
    if args.check:
        return run_check(args.check, args.workdir)
    reason = no_gpu_reason()
    if reason is not None:
        print(f"gpu-check: SKIP, {reason}")
        return 0
    return run_all(args.only or list(CHECKS))


def run_all(names: list[str]) -> int:
    import torch

    workdir = Path(tempfile.mkdtemp(prefix="tunery-gpu-check-"))
    write_data(workdir)
    print(f"gpu-check on {torch.cuda.get_device_name(0)}: torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"work in {workdir}", flush=True)  # fmt: skip
    deadline = time.monotonic() + TOTAL_S
    results = []
    for name in names:
        limit = min(CHECKS[name][1], deadline - time.monotonic())
        if limit < 15:
            result = Result(name, "SKIP", f"no time left of the {TOTAL_S} s budget")
        else:
            result = run_child(name, workdir, limit)
        results.append(result)
        print(result.line(), flush=True)
    failed = [result.name for result in results if result.status == "FAIL"]
    print(
        f"gpu-check: {len(results) - len(failed)} of {len(results)} did not fail"
        + (f"; FAIL: {', '.join(failed)}" if failed else "")
    )
    return exit_code(results)


def run_child(name: str, workdir: Path, limit: float) -> Result:
    """The check in its own process group, killed whole (torchrun's workers too) at its time limit."""
    out = workdir / f"{name}.result.json"
    started = time.monotonic()
    command = [sys.executable, __file__, "--check", name, "--workdir", str(workdir)]
    log = (workdir / f"{name}.log").open("w")
    child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        child.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return Result(
            name, "FAIL", f"timed out after {limit:.0f} s; log {log.name}", time.monotonic() - started
        )
    finally:
        log.close()
    seconds = time.monotonic() - started
    if child.returncode != 0 or not out.exists():
        return Result(name, "FAIL", f"exit {child.returncode}: {_last_line(Path(log.name))}", seconds)
    found = json.loads(out.read_text())
    return Result(name, found["status"], found["detail"], seconds)


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return (lines[-1][:200] if lines else "no output") + f" (log {path})"


def run_check(name: str, workdir: Path) -> int:
    """In the child: run one check and write its status and detail for the parent."""
    sys.path.insert(0, str(BENCH))
    status, detail = CHECKS[name][0](workdir)
    (workdir / f"{name}.result.json").write_text(json.dumps({"status": status, "detail": detail}))
    return 0


def write_data(workdir: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from chat_data import make_rows, write_jsonl

    rows = make_rows(96, seed=7, two_turn_share=0.0)
    write_jsonl(rows[:64], workdir / "train.jsonl")
    write_jsonl(rows[64:], workdir / "valid.jsonl")


# --- the checks (each in its own child process) ------------------------------------------------


def train_config(workdir: Path, name: str, device: str, **sections: dict) -> dict:
    """A few steps of LoRA on the bench's chat rows; `sections` update the config's sections."""
    config = {
        "model": {"name": MODEL, "device": device},
        "data": {"train": str(workdir / "train.jsonl"), "validation_split": 0.0, "max_length": 512},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},  # no dropout: CPU and GPU draw different masks
        "train": {"max_steps": STEPS, "batch_size": 4, "lr": 1e-3, "warmup_ratio": 0.0, "seed": 42},
        "output_dir": str(workdir / "runs"),
        "run_name": name,
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    return config


def losses_of(run) -> list[float]:
    return [row["loss"] for row in run.history() if "loss" in row]


def train(config: dict):
    import tunery

    return tunery.train(config, quiet=True)


def check_lora_bf16(workdir: Path) -> tuple[str, str]:
    import importlib.util

    reference = losses_of(train(train_config(workdir, "lora-cpu", "cpu")))
    variants = {"SDPA varlen": {}}
    if importlib.util.find_spec("flash_attn") is not None:
        variants["flash-attn varlen"] = {"attn_implementation": "flash_attention_2"}
    parts, runs = [], {"cpu": str(workdir / "runs" / "lora-cpu")}
    for label, model in variants.items():
        name = "lora-gpu" if not model else "lora-gpu-flash"
        run = train(train_config(workdir, name, GPU, model=model))
        if run.record["dtype"] != GPU_DTYPE:
            return "FAIL", f"{label}: trained in {run.record['dtype']}, not {GPU_DTYPE}"
        curve = losses_of(run)
        problem = compare_curves(reference, curve, CURVE_RTOL)
        if problem:
            return "FAIL", f"{label}: {problem}"
        step, gap = curve_gap(reference, curve)
        parts.append(f"{label} {curve[0]:.3f}->{curve[-1]:.3f}, worst step {step} {100 * gap:.1f}% from CPU fp32, "
                     f"{run.metrics['tokens_per_s']:.0f} sup tok/s")  # fmt: skip
        runs.setdefault("gpu", str(run.path))
    (workdir / "lora-runs.json").write_text(json.dumps(runs))
    if len(variants) == 1:
        parts.append("flash_attn not installed")
    return "PASS", f"{STEPS} steps {GPU_DTYPE}: " + "; ".join(parts)


def check_qlora(workdir: Path) -> tuple[str, str]:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "SKIP", "bitsandbytes not installed (pip install -e '.[qlora]')"
    cpu = train(train_config(workdir, "qlora-cpu", "cpu", method="qlora"))
    gpu = train(train_config(workdir, "qlora-gpu", GPU, method="qlora", qlora={"paged_optimizer": True}))
    reference, curve = losses_of(cpu), losses_of(gpu)
    problem = compare_curves(reference, curve, QLORA_RTOL)
    if problem:
        return "FAIL", problem
    step, gap = curve_gap(reference, curve)
    peak = _peak_gpu_mib()
    return "PASS", (f"NF4 + paged AdamW8bit {curve[0]:.3f}->{curve[-1]:.3f}, worst step {step} {100 * gap:.1f}% from "
                    f"CPU QLoRA (AdamW), peak {peak} MiB")  # fmt: skip


def _peak_gpu_mib() -> int:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20)


def check_serving(workdir: Path) -> tuple[str, str]:
    from chat_data import make_rows

    from tunery.serve.engine import Engine, Finish, Sampling, Target, Token

    runs_file = workdir / "lora-runs.json"
    if not runs_file.exists():
        return "SKIP", "needs the adapters the lora-bf16 check trains"
    runs = json.loads(runs_file.read_text())
    engine = Engine(max_adapters=2, window_s=0.2, device=GPU).start()
    try:
        targets = [Target.for_base(MODEL), Target.for_run(runs["gpu"]), Target.for_run(runs["cpu"])]
        prompts = [row["messages"][:-1] for row in make_rows(4, seed=11, two_turn_share=0.0)]
        jobs = [(t, engine.encode_chat(t, messages)) for t in targets for messages in prompts]
        greedy = Sampling(max_tokens=24, temperature=0)

        def answer(stream) -> str:
            events = list(stream.events())
            assert isinstance(events[-1], Finish), f"the stream ended with {events[-1]!r}"
            return "".join(event.text for event in events if isinstance(event, Token))

        alone = [answer(engine.submit(target, prompt, greedy)) for target, prompt in jobs]
        engine.batch_sizes.clear()
        streams = [engine.submit(target, prompt, greedy) for target, prompt in jobs]
        together = [answer(stream) for stream in streams]
        largest = max(engine.batch_sizes, default=0)
    finally:
        engine.stop()
    problem = compare_answers(alone, together)
    if problem:
        return "FAIL", problem
    base = alone[: len(prompts)]
    changed = sum(text != base[i % len(prompts)] for i, text in enumerate(alone[len(prompts) :]))
    return "PASS", (f"{len(jobs)} requests (base + 2 adapters) in batches of up to {largest} answer as alone; "
                    f"{changed} of {2 * len(prompts)} adapter answers differ from the base's")  # fmt: skip


def check_ddp_nccl(workdir: Path) -> tuple[str, str]:
    out = workdir / "nccl.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
               __file__, "--nccl-worker", "--workdir", str(workdir)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        return (
            "FAIL",
            f"torchrun exit {done.returncode}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}",
        )
    found = json.loads(out.read_text())
    return found["status"], found["detail"]


def nccl_worker(workdir: Path) -> int:
    """Under torchrun: an NCCL process group, then tunery's collectives on a real LoRA gradient."""
    import torch
    import torch.distributed as dist

    from tunery.training import distributed

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    dist.init_process_group("nccl")
    try:
        status, detail = _collectives_on_a_lora_step(device, workdir)
        detail = f"world size {dist.get_world_size()}, backend {dist.get_backend()}: {detail}"
    finally:
        distributed.teardown()
    (workdir / "nccl.json").write_text(json.dumps({"status": status, "detail": detail}))
    return 0


def _collectives_on_a_lora_step(device, workdir: Path) -> tuple[str, str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from tunery.data.batching import collate_packed
    from tunery.data.formats import load_examples
    from tunery.data.tokenize import encode_examples
    from tunery.models import load_causal_lm, resolve_model
    from tunery.nn.loss import causal_lm_parts, summed_loss
    from tunery.training import distributed

    if distributed.all_sum(7) != 7 or distributed.all_max(2.5) != 2.5:
        return "FAIL", "all_sum/all_max over one rank did not return the value itself"
    model, tokenizer = load_causal_lm(resolve_model(MODEL), device, getattr(torch, GPU_DTYPE))
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM",
                                             init_lora_weights="gaussian"))  # fmt: skip
    rows = encode_examples(load_examples(str(workdir / "train.jsonl")).examples[:4], tokenizer, 512).examples
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in collate_packed(rows).items()}
    loss, _ = summed_loss(model, batch, causal_lm_parts(model))
    loss.backward()
    before = [p.grad.detach().clone() for p in distributed.trainable(model)]
    distributed.sum_gradients(model)
    after = [p.grad for p in distributed.trainable(model)]
    if not all(torch.equal(a, b) for a, b in zip(before, after, strict=True)):
        return "FAIL", "the gradient sum over one rank changed the gradients"
    if not all(torch.isfinite(g).all() for g in after) or not any(g.abs().sum() > 0 for g in after):
        return "FAIL", "the LoRA gradients are not finite or all zero"
    megabytes = sum(g.numel() * g.element_size() for g in after) / 2**20
    return (
        "PASS",
        f"all_sum, all_max and sum_gradients over {len(after)} LoRA gradients ({megabytes:.1f} MB) agree",
    )


def check_deepspeed(workdir: Path) -> tuple[str, str]:
    """bench/gpu_check_deepspeed.py's run, and the same overrides on the CPU without DeepSpeed."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        return "SKIP", "deepspeed not installed (pip install -e '.[deepspeed]')"
    from gpu_check_deepspeed import EXAMPLES, gpu_check

    steps = 8  # gpu_check's default, with its batch 8 and lr 1e-3 on examples/demo.yaml
    result = gpu_check(steps=steps, stage=2)
    if result is None:
        return "SKIP", "gpu_check_deepspeed found no GPU"
    import tunery

    cpu = tunery.train(
        EXAMPLES / "demo.yaml",
        overrides=[f"train.max_steps={steps}", "train.batch_size=8", "train.lr=1e-3", "train.warmup_ratio=0",
                   f"train.save_every={steps}", f"train.eval_every={steps}", "model.device=cpu",
                   f"output_dir={workdir / 'runs'}", "run_name=deepspeed-cpu"],
        quiet=True,
    )  # fmt: skip
    # demo.yaml keeps LoRA dropout on: CPU and GPU draw different masks, hence the looser tolerance.
    problem = compare_curves(losses_of(cpu), result["losses"], QLORA_RTOL)
    if problem:
        return "FAIL", f"ZeRO-2: {problem}"
    step, gap = curve_gap(losses_of(cpu), result["losses"])
    return "PASS", (f"ZeRO-2 ({result['dtype']}) {result['losses'][0]:.3f}->{result['losses'][-1]:.3f}, worst step "
                    f"{step} {100 * gap:.1f}% from CPU fp32, {result['tokens_per_s']:.0f} sup tok/s, "
                    f"peak {result['peak_gpu_mib']} MiB")  # fmt: skip


def check_speed_vs_trl(workdir: Path) -> tuple[str, str]:
    """One epoch over the same 64 rows, batch 8, both in bf16 without padding; held-out loss by one scorer."""
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        return "SKIP", "trl not installed (pip install -e '.[bench]')"
    flash = importlib.util.find_spec("flash_attn") is not None
    liger = importlib.util.find_spec("liger_kernel") is not None
    ours = _tunery_speed(workdir, flash)
    theirs = _trl_speed(workdir, flash, liger)
    ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
    loss = ours["val_loss"] / theirs["val_loss"] - 1
    attention = "flash-attn varlen" if flash else "SDPA (tunery per example, TRL block-diagonal mask)"
    detail = (f"tunery {ours['tokens_per_s']:.0f} vs TRL {theirs['tokens_per_s']:.0f} sup tok/s = {ratio:.2f}x "
              f"(goal {SPEED_GOAL}x: {'met' if ratio >= SPEED_GOAL else 'NOT met'}); held-out loss "
              f"{ours['val_loss']:.4f} vs {theirs['val_loss']:.4f} ({100 * loss:+.1f}%); {attention}; "
              f"Liger {'on' if liger else 'not installed'}")  # fmt: skip
    return ("PASS" if loss <= 0.02 else "FAIL"), detail


SPEED_COMMON = {"lr": 5e-4, "epochs": 1, "batch_size": 8, "seed": 42, "lora_r": 16, "lora_alpha": 32,
                "lora_dropout": 0.05, "max_length": 1024}  # train_speed.COMMON's settings  # fmt: skip


def _tunery_speed(workdir: Path, flash: bool) -> dict:
    import train_speed
    from peft import PeftModel

    config = train_speed.tunery_config(
        workdir / "runs", workdir / "train.jsonl", SPEED_COMMON, "speed-tunery"
    )
    config["model"] |= {"device": GPU} | ({"attn_implementation": "flash_attention_2"} if flash else {})
    run = train(config)
    model, tokenizer = train_speed._load(with_lora=False, common=SPEED_COMMON)
    model = PeftModel.from_pretrained(model.to(GPU), run.adapter_dir)
    loss = train_speed.validation_loss(model, tokenizer, workdir / "valid.jsonl", SPEED_COMMON)
    return {"tokens_per_s": run.metrics["tokens_per_s"], "val_loss": loss}


def _trl_speed(workdir: Path, flash: bool, liger: bool) -> dict:
    import torch
    import train_speed
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunery.models import resolve_model

    path = resolve_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    attention = "flash_attention_2" if flash else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, GPU_DTYPE), attn_implementation=attention
    )
    rows = train_speed._read_rows(workdir / "train.jsonl")
    dataset = Dataset.from_list(
        [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    )
    timing = train_speed._timing_callback()
    arguments = train_speed._trainer_args(SPEED_COMMON, workdir / "runs") | {"use_cpu": GPU == "cpu"}
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**arguments, bf16=GPU_DTYPE == "bfloat16", padding_free=True, max_length=None, gradient_checkpointing=False,
                       use_liger_kernel=liger),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=train_speed._lora_config(SPEED_COMMON),
        callbacks=[timing],
    )  # fmt: skip
    trainer.train()
    supervised = train_speed.supervised_tokens(workdir / "train.jsonl", tokenizer, SPEED_COMMON)
    loss = train_speed.validation_loss(trainer.model, tokenizer, workdir / "valid.jsonl", SPEED_COMMON)
    return {"tokens_per_s": supervised / timing.timing["train_s"], "val_loss": loss}


# name: (check, time limit in seconds); run in this order (serving uses lora-bf16's adapters)
CHECKS: dict[str, tuple[Callable[[Path], tuple[str, str]], float]] = {
    "lora-bf16": (check_lora_bf16, 100),
    "qlora": (check_qlora, 100),
    "serving": (check_serving, 45),
    "ddp-nccl": (check_ddp_nccl, 60),
    "deepspeed": (check_deepspeed, 75),
    "speed-vs-trl": (check_speed_vs_trl, 100),
}


if __name__ == "__main__":
    sys.exit(main())
