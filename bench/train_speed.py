"""Training speed: tunery against the naive Trainer script and TRL's SFTTrainer, on the same work.

    make bench-train                                    # = .venv/bin/python bench/train_speed.py --scaling
    .venv/bin/python bench/train_speed.py --train 48 --repeats 3 --scaling --markdown /tmp/bench.md
    .venv/bin/python bench/train_speed.py --systems tunery trl-fast --train 16   # a quick look
    .venv/bin/python bench/train_speed.py --systems --scaling                    # the scaling table alone

Four systems train SmolLM2-135M-Instruct with LoRA (r=16, alpha=32, dropout 0.05,
all linear layers) for one epoch over the same generated chat rows (bench/chat_data.py:
lengths ~60 to ~900 tokens), batch 8, the same learning rate, schedule and seed:

  naive       transformers Trainer + PEFT, `padding="max_length", max_length=512`, loss on every token
  trl-default TRL SFTTrainer as shipped (bf16 autocast, gradient checkpointing), prompt-completion rows
  trl-fast    TRL SFTTrainer with fp32, no gradient checkpointing, padding_free=True
  tunery      `tunery.train` with its defaults
  tunery-bf16 (optional, --systems) tunery with model.dtype=bfloat16, on CPUs with bf16 units

Each run is its own process (clean peak RSS, cold start included). After training, every
system's model is scored by the same function: mean loss per assistant token on the same
held-out rows. Supervised tokens are the assistant tokens of the training rows, the same
count for every system, so tokens/s compares how fast each turns the same data into a model.
Rounds run the systems interleaved (a round is every system once, all with the round's
seed: 42, 43, ...) and the table shows medians, because the machine is shared and a few
steps' loss depends on the seed.

Two utilisation figures, both against the GEMM rate measured between rounds on the model's
own matrix shapes with the same thread count (fp32; bf16 for the systems whose products run
in bf16):

  HFU  the matmul FLOPs the system's run really executed (tunery/training/flops.py: body
       forward and input gradient on every position it computes, attention over the pairs its
       kernel scores, the LM head where it applies it, LoRA's products, recomputation), counted
       from the batches each system actually built, over its training time;
  MFU per supervised token  4 x (matmul parameters, LM head included) per supervised token,
       the older measure: prompt tokens' work is not in it, so it cannot reach 100% on chat data.

--scaling adds tunery's cost as work grows: tokens/s, peak RSS and HFU with examples of 256,
1k and 4k tokens (each step one packed row of --step-tokens tokens) at LoRA ranks 8 and 64.

--profile runs tunery alone under torch.profiler (the bench's rows, steps 2 and 3) and prints
where a step's time goes: the top operators by self time and their share by kind (matrix
products, attention, dropout masks, elementwise work, the rest), nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("naive", "trl-default", "trl-fast", "tunery")
OPTIONAL = ("tunery-bf16",)  # model.dtype=bfloat16: only where the CPU has bf16 units (AMX, avx512_bf16)
BF16_SYSTEMS = ("trl-default", "tunery-bf16")  # their products run in bf16 (autocast, bf16 weights)
MODEL = "smollm2-135m-instruct"
COMMON = {
    "lr": 5e-4,
    "epochs": 1,
    "batch_size": 8,
    "seed": 42,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "max_length": 1024,
}
GEMM_TOKENS = 1024  # rows of the timed products ([tokens, in] @ [in, out])
GOALS = {
    "hfu": 0.70,
    "vs_trl_fast": 3.0,
    "vs_naive": 5.0,
    "loss_within": 0.01,
    "startup_s": 10.0,
    "rss_vs_trl": 0.5,
}


# --- the parent: data, GEMM, rounds, tables --------------------------------------------------


def main() -> None:
    args = parse_args()
    if args.child == "scaling":
        run_scaling_child(args)
        return
    if args.child == "profile":
        run_profile_child(args)
        return
    if args.child:
        run_child(args.child, args.workdir, args.threads, args.seed)
        return
    if args.profile:
        run_profile(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="tunery-bench-"))
    model = decoder()
    dtypes = ["float32"] + (["bfloat16"] if set(args.systems) & set(BF16_SYSTEMS) else [])
    print(f"data and runs in {workdir}; {args.threads} threads", flush=True)
    gemm: list[dict[str, float]] = []
    runs = compare_systems(args, workdir, model, dtypes, gemm) if args.systems else {}
    gemm.append(gemm_rates(args.threads, model, dtypes))
    rates = {name: statistics.median(g[name] for g in gemm) for name in dtypes}
    table = build_table(runs, rates, model)
    scaling = run_scaling(args, workdir, model, rates["float32"]) if args.scaling else []
    text = render(table, scaling, gemm, args)
    print("\n" + text)
    if args.json:
        document = {"runs": runs, "gemm_flops_per_s": gemm, "table": table, "scaling": scaling}
        args.json.write_text(json.dumps(document, indent=2))
    if args.markdown:
        args.markdown.write_text(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--systems",
        nargs="*",
        choices=SYSTEMS + OPTIONAL,
        default=list(SYSTEMS),
        help="systems to compare (none: the scaling table alone)",
    )
    parser.add_argument("--train", type=int, default=48, help="training rows (one epoch)")
    parser.add_argument("--valid", type=int, default=24, help="held-out rows scored after training")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the table shows medians")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--scaling", action="store_true", help="add tunery's scaling table")
    parser.add_argument("--scaling-lengths", nargs="+", type=int, default=[256, 1024, 4096])
    parser.add_argument("--scaling-ranks", nargs="+", type=int, default=[8, 64])
    parser.add_argument(
        "--scaling-steps", type=int, default=3, help="steps per scaling run (first not timed)"
    )
    parser.add_argument("--step-tokens", type=int, default=4096, help="tokens per step in the scaling runs")
    parser.add_argument("--profile", action="store_true", help="profile tunery's steps and print the top ops")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    parser.add_argument("--markdown", type=Path, help="write the report here")
    parser.add_argument(
        "--child", choices=SYSTEMS + OPTIONAL + ("scaling", "profile"), help=argparse.SUPPRESS
    )
    parser.add_argument("--seed", type=int, default=COMMON["seed"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()  # fmt: skip


def compare_systems(args, workdir: Path, model, dtypes: list[str], gemm: list) -> dict[str, list[dict]]:
    """Interleaved rounds of every system on the same rows; the GEMM rates before each round."""
    from chat_data import make_rows, write_jsonl

    rows = make_rows(args.train + args.valid, seed=7, two_turn_share=0.0)
    write_jsonl(rows[: args.train], workdir / "train.jsonl")
    write_jsonl(rows[args.train :], workdir / "valid.jsonl")
    (workdir / "common.json").write_text(json.dumps(COMMON))
    runs: dict[str, list[dict]] = {name: [] for name in args.systems}
    for round_ in range(args.repeats):
        gemm.append(gemm_rates(args.threads, model, dtypes))
        seed = COMMON["seed"] + round_  # every system gets the same seed in a round; medians span seeds
        print(f"round {round_ + 1}: seed {seed}, GEMM {_rates_text(gemm[-1])}", flush=True)
        order = args.systems if round_ % 2 == 0 else args.systems[::-1]  # interleaved, both directions
        for name in order:
            result = run_system(name, workdir, args.threads, seed)
            runs[name].append(result)
            print(f"  {name:12s} {summary_line(result)}", flush=True)
    return runs


def run_system(name: str, workdir: Path, threads: int, seed: int) -> dict:
    out = workdir / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", name, "--workdir", str(workdir),
               "--threads", str(threads), "--seed", str(seed)]  # fmt: skip
    return _run_child_process(command, out)


def _run_child_process(command: list[str], out: Path) -> dict:
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout)[-3000:]
        return {"error": f"exit {done.returncode}: {tail}", "wall_s": time.time() - started}
    return json.loads(out.read_text()) | {"wall_s": round(time.time() - started, 2)}


def decoder():
    """SmolLM2's matrix shapes, read from the bundled model's config."""
    from transformers import AutoConfig

    from tunery.models import resolve_model
    from tunery.training.flops import Decoder

    return Decoder.from_config(AutoConfig.from_pretrained(resolve_model(MODEL)))


def gemm_rates(threads: int, model, dtypes: list[str], repeats: int = 5) -> dict[str, float]:
    """FLOP/s of torch.matmul on the model's own shapes, [GEMM_TOKENS, in] @ [in, out], per dtype:
    each shape timed alone (median of repeats), weighted by how often a forward pass runs it."""
    import torch

    from tunery.training.flops import weighted_gemm_rate

    torch.set_num_threads(threads)
    rates = {}
    for name in dtypes:
        dtype = getattr(torch, name)
        seconds = {}
        for n_in, n_out in model.gemm_shapes():
            a, b = torch.randn(GEMM_TOKENS, n_in, dtype=dtype), torch.randn(n_in, n_out, dtype=dtype)
            torch.matmul(a, b)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                torch.matmul(a, b)
                times.append(time.perf_counter() - start)
            seconds[(n_in, n_out)] = statistics.median(times)
        rates[name] = weighted_gemm_rate(model, GEMM_TOKENS, seconds)
    return rates


def _rates_text(rates: dict[str, float]) -> str:
    return ", ".join(f"{name} {rate / 1e9:.1f} GFLOP/s" for name, rate in rates.items())


def summary_line(result: dict) -> str:
    if "error" in result:
        return "FAILED " + result["error"].strip().splitlines()[-1]
    return (
        f"{result['supervised_tokens_per_s']:.1f} sup tok/s, train {result['train_s']:.1f} s, "
        f"start-up {result['startup_s']:.1f} s, first step done {result['first_step_s']:.1f} s, RSS {result['peak_rss_mb']:.0f} MB, "
        f"val loss {result['val_loss']:.4f}, wall {result['wall_s']:.0f} s"
    )


def run_flops(result: dict, model):
    """The matmul FLOPs of one system's run, from the work its batches put through the model."""
    from tunery.training.flops import StepSetup, Work, training_flops

    setup = StepSetup(**(result["setup"] | {"lora_targets": tuple(result["setup"]["lora_targets"])}))
    return training_flops(model, Work(**result["work"]), setup)


def build_table(runs: dict[str, list[dict]], rates: dict[str, float], model) -> dict:
    from tunery.training.flops import mfu_per_supervised_token, utilisation

    table = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            table[name] = {"error": results[-1]["error"].strip().splitlines()[-1]}
            continue
        med = {
            key: statistics.median(r[key] for r in ok) for key in ok[0] if isinstance(ok[0][key], float | int)
        }
        rate = rates[ok[0]["dtype"]]
        flops = run_flops(ok[0], model)  # the same batches in every round (seeded shuffles aside)
        med |= {
            "runs": len(ok),
            "dtype": ok[0]["dtype"],
            "flops": flops.total,
            "attention_share": flops.attention / flops.total,
            "head_share": flops.head / flops.total,
        }
        med["hfu"] = statistics.median(utilisation(run_flops(r, model).total, r["train_s"], rate) for r in ok)
        med["mfu"] = mfu_per_supervised_token(med["supervised_tokens_per_s"], model, rate)
        med["spread"] = _spread([r["supervised_tokens_per_s"] for r in ok])
        table[name] = med
    return table  # fmt: skip


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else "-"


def render(table: dict, scaling: list[dict], gemm: list[dict[str, float]], args) -> str:
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, {_cpu_name()}"
    systems = " ".join(args.systems) if args.systems else "(none)"
    lines = [
        "# Training speed",
        "",
        f"`.venv/bin/python bench/train_speed.py --train {args.train} --valid {args.valid} --repeats {args.repeats} "
        f"--systems {systems}{' --scaling' if args.scaling else ''}` ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {machine}; torch {_version('torch')}, transformers {_version('transformers')}, "
        f"peft {_version('peft')}, trl {_version('trl')}.",
        "",
        *gemm_lines(gemm),
    ]
    if table:
        lines += ["", *comparison_lines(table), "", *goal_lines(table)]
        lines += [
            "",
            f"Medians of {args.repeats} interleaved round(s); {args.train} training rows, one epoch, "
            f"{args.valid} held-out rows. Start-up: process start to the start of the first optimiser "
            "step (imports, model load, tokenisation); first step done: to its end. HFU: the matmul FLOPs "
            "each system's run executed (its own batches, its own head and attention; docs/benchmarks.md) "
            "over its training time and the GEMM rate of its dtype. MFU per supervised token: "
            "4 x matmul parameters per supervised token over the same rate.",
        ]
    if scaling:
        lines += ["", *scaling_lines(scaling, args)]
    return "\n".join(lines) + "\n"


def gemm_lines(gemm: list[dict[str, float]]) -> list[str]:
    lines = []
    for name in gemm[0]:
        values = [g[name] / 1e9 for g in gemm]
        lines.append(
            f"GEMM rate, {name}, torch.matmul on the model's shapes: {statistics.median(values):.1f} GFLOP/s "
            f"(median; measured {', '.join(f'{v:.0f}' for v in values)})."
        )
    return lines


def comparison_lines(table: dict) -> list[str]:
    lines = [
        "| system | supervised tok/s (median, range) | train s | start-up s | first step done s | peak RSS MB "
        "| val loss | HFU | MFU per supervised token | matmul TFLOP (attention, head) | tunery / this |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = table.get("tunery", {}).get("supervised_tokens_per_s")
    for name, row in table.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} | | | | | | | | | |")
            continue
        ratio = f"{ours / row['supervised_tokens_per_s']:.2f}x" if ours else "-"
        work = (
            f"{row['flops'] / 1e12:.1f} ({100 * row['attention_share']:.0f}%, {100 * row['head_share']:.0f}%)"
        )
        lines.append(
            f"| {name} | {row['supervised_tokens_per_s']:.1f} ({row['spread']}) | {row['train_s']:.1f} "
            f"| {row['startup_s']:.1f} | {row['first_step_s']:.1f} | {row['peak_rss_mb']:.0f} | {row['val_loss']:.4f} "
            f"| {100 * row['hfu']:.1f}% | {100 * row['mfu']:.1f}% | {work} | {ratio} |"
        )
    return lines


def goal_lines(table: dict) -> list[str]:
    """The issue's goals, each with the measured figure and whether it holds."""
    ours, fast, naive = (table.get(name, {}) for name in ("tunery", "trl-fast", "naive"))
    if "hfu" not in ours:
        return ["Goals for tunery: not measured (tunery did not run)."]
    checks: list[tuple[str, bool | str]] = [
        (f"HFU {100 * ours['hfu']:.1f}% of the {ours['dtype']} GEMM rate (goal at least {100 * GOALS['hfu']:.0f}%)",
         ours["hfu"] >= GOALS["hfu"]),
    ]  # fmt: skip
    if "hfu" in fast:
        speed = ours["supervised_tokens_per_s"] / fast["supervised_tokens_per_s"]
        loss = ours["val_loss"] / fast["val_loss"] - 1
        rss = ours["peak_rss_mb"] / fast["peak_rss_mb"]
        checks += [
            (f"speed vs TRL-fast {speed:.2f}x (goal at least {GOALS['vs_trl_fast']:.0f}x)",
             speed >= GOALS["vs_trl_fast"]),
            (f"val loss vs TRL-fast {100 * loss:+.2f}% (goal at most +{100 * GOALS['loss_within']:.0f}%)",
             loss <= GOALS["loss_within"]),
            (f"peak RSS vs TRL-fast {rss:.2f}x (goal at most {GOALS['rss_vs_trl']}x)", rss <= GOALS["rss_vs_trl"]),
        ]  # fmt: skip
    else:
        checks.append(("speed, val loss and peak RSS vs TRL-fast", "not measured (trl-fast did not run)"))
    if "hfu" in naive:
        speed = ours["supervised_tokens_per_s"] / naive["supervised_tokens_per_s"]
        checks.append(
            (
                f"speed vs naive {speed:.2f}x (goal at least {GOALS['vs_naive']:.0f}x)",
                speed >= GOALS["vs_naive"],
            )
        )
    else:
        checks.append(("speed vs naive", "not measured (naive did not run)"))
    checks.append((f"start-up {ours['startup_s']:.1f} s, median of rounds (goal under {GOALS['startup_s']:.0f} s warm)",
                   ours["startup_s"] < GOALS["startup_s"]))  # fmt: skip
    verdict = {True: "met", False: "NOT met"}
    return ["Goals for tunery:", ""] + [
        f"- {text}: {verdict[ok] if isinstance(ok, bool) else ok}" for text, ok in checks
    ]


def scaling_lines(scaling: list[dict], args) -> list[str]:
    lines = [
        f"Scaling (tunery, fp32, LoRA on all linear layers, alpha = 2r): each step one packed row of "
        f"{args.step_tokens} tokens (one example when longer) of chat examples truncated to the length; "
        f"{args.scaling_steps} steps, the first not timed.",
        "",
        "| example length | LoRA rank | examples per step | tokens/s | supervised tok/s | peak RSS MB | HFU "
        "| attention share of FLOPs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in scaling:
        if "error" in row:
            lines.append(
                f"| {row['length']} | {row['rank']} | failed: {row['error'].strip().splitlines()[-1]} |||||"
            )
            continue
        lines.append(
            f"| {row['mean_length']:.0f} | {row['rank']} | {row['examples_per_step']} | {row['tokens_per_s']:.1f} "
            f"| {row['supervised_tokens_per_s']:.1f} | {row['peak_rss_mb']:.0f} | {100 * row['hfu']:.1f}% "
            f"| {100 * row['attention_share']:.0f}% |"
        )
    return lines


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


# --- scaling: tunery alone, longer examples and other ranks -----------------------------------


def run_scaling(args, workdir: Path, model, rate: float) -> list[dict]:
    results = []
    for rank in args.scaling_ranks:
        for length in args.scaling_lengths:
            out = workdir / f"scaling-{length}-r{rank}.json"
            out.unlink(missing_ok=True)
            command = [sys.executable, __file__, "--child", "scaling", "--workdir", str(workdir),
                       "--threads", str(args.threads), "--length", str(length), "--rank", str(rank),
                       "--scaling-steps", str(args.scaling_steps), "--step-tokens", str(args.step_tokens)]  # fmt: skip
            result = _run_child_process(command, out) | {"length": length, "rank": rank}
            if "error" not in result:
                result |= scaling_figures(result, model, rate)
            results.append(result)
            figures = (
                "FAILED"
                if "error" in result
                else f"{result['tokens_per_s']:.1f} tok/s, HFU {100 * result['hfu']:.1f}%"
            )
            print(f"  scaling: length {length}, rank {rank}: {figures}", flush=True)
    return results


def scaling_figures(result: dict, model, rate: float) -> dict:
    """Speed and HFU of the timed steps (all steps carry the same work)."""
    from tunery.training.flops import utilisation

    flops = run_flops(result, model)
    share = result["timed_steps"] / result["steps"]
    return {
        "tokens_per_s": result["work"]["tokens"] * share / result["timed_s"],
        "supervised_tokens_per_s": result["work"]["head_positions"] * share / result["timed_s"],
        "hfu": utilisation(flops.total * share, result["timed_s"], rate),
        "attention_share": flops.attention / flops.total,
    }


def run_scaling_child(args) -> None:
    """One tunery run of --scaling-steps steps on examples of --length tokens at LoRA rank --rank."""
    import shutil

    import torch
    from chat_data import write_jsonl

    import tunery
    from tunery.models import load_tokenizer, resolve_model
    from tunery.training.flops import StepSetup, per_example

    torch.set_num_threads(args.threads)
    length, rank, steps = args.length, args.rank, args.scaling_steps
    batch = max(1, args.step_tokens // length)
    tokenizer = load_tokenizer(resolve_model(MODEL))
    rng = random.Random(length)
    path = write_jsonl([long_chat(rng, tokenizer, length) for _ in range(batch * steps)],
                       args.workdir / f"scaling-{length}-r{rank}.jsonl")  # fmt: skip
    common = COMMON | {"max_length": length, "lora_r": rank, "lora_alpha": 2 * rank, "batch_size": batch}
    examples = _encoded(path, tokenizer, common)
    name = f"scaling-{length}-r{rank}"
    shutil.rmtree(args.workdir / name, ignore_errors=True)
    config = tunery_config(args.workdir, path, common, name)
    config["train"]["max_steps"] = steps
    metrics = tunery.train(config, quiet=True).metrics
    first_step = metrics["first_step_seconds"] - metrics["setup_seconds"]
    timed = steps > 1  # the first step (warm-up, allocations) is left out when there are others
    from tunery.data.batching import supervised_tokens as count_supervised

    work = per_example([len(e.input_ids) for e in examples], count_supervised(examples))
    result = {
        "examples_per_step": batch,
        "steps": steps,
        "timed_steps": steps - 1 if timed else steps,
        "timed_s": metrics["train_seconds"] - first_step if timed else metrics["train_seconds"],
        "mean_length": work.tokens / len(examples),
        "work": asdict(work),
        "setup": asdict(StepSetup(lora_rank=rank)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (args.workdir / f"{name}.json").write_text(json.dumps(result))


# --- profile: where tunery's step time goes ---------------------------------------------------

# Operator kinds for the profile's summary, by aten name (self time: children are not counted twice).
OP_KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::linear"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                  "aten::_scaled_dot_product_efficient_attention", "aten::_flash_attention_forward"),
    "dropout masks": ("aten::random_", "aten::bitwise_and", "aten::ge", "aten::where", "aten::bernoulli_"),
    "elementwise": ("aten::mul", "aten::add", "aten::mul_", "aten::add_", "aten::sub", "aten::sub_", "aten::div",
                    "aten::div_", "aten::pow", "aten::rsqrt", "aten::mean", "aten::neg", "aten::silu",
                    "aten::silu_backward", "aten::exp_", "aten::amax", "aten::sum", "aten::cat", "aten::copy_"),
}  # fmt: skip
REST = "the rest (Python, autograd, other ops)"  # every operator OP_KINDS does not name


def run_profile(args) -> None:
    from chat_data import make_rows, write_jsonl

    workdir = Path(tempfile.mkdtemp(prefix="tunery-profile-"))
    write_jsonl(make_rows(args.train, seed=7, two_turn_share=0.0), workdir / "train.jsonl")
    (workdir / "common.json").write_text(json.dumps(COMMON))
    command = [sys.executable, __file__, "--child", "profile", "--workdir", str(workdir), "--threads",
               str(args.threads)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(done.stdout if done.returncode == 0 else (done.stderr or done.stdout)[-3000:])


def run_profile_child(args) -> None:
    """tunery.train with the profiler stepping at each optimiser step: skip one, record two."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, profile, schedule

    import tunery

    torch.set_num_threads(args.threads)
    common = json.loads((args.workdir / "common.json").read_text())
    profiler = profile(
        activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=1, active=2, repeat=1)
    )
    register_optimizer_step_post_hook(lambda *_: profiler.step())
    config = tunery_config(args.workdir / "out", args.workdir / "train.jsonl", common, "profile")
    config["train"]["max_steps"] = 4
    with profiler:
        tunery.train(config, quiet=True)
    print(profile_report(profiler.key_averages()))


def profile_report(averages) -> str:
    total = sum(event.self_cpu_time_total for event in averages)
    by_kind = dict.fromkeys([*OP_KINDS, REST], 0.0)
    for event in averages:
        kind = next((k for k, names in OP_KINDS.items() if event.key in names), None)
        by_kind[kind or REST] += event.self_cpu_time_total
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    lines = [
        f"tunery, 2 profiled steps: {total / 1e6:.2f} s of self CPU time",
        "",
        "| kind | share |",
        "|---|---:|",
    ]
    lines += [f"| {kind} | {100 * t / total:.1f}% |" for kind, t in by_kind.items()]
    lines += ["", "| operator | calls | self s | share |", "|---|---:|---:|---:|"]
    lines += [f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e6:.2f} | {100 * e.self_cpu_time_total / total:.1f}% |"
              for e in top]  # fmt: skip
    return "\n".join(lines)


def long_chat(rng: random.Random, tokenizer, length: int) -> dict:
    """A chat row of at least `length` tokens (orders in the prompt, their JSON as the answer:
    about half each), for truncation to exactly `length`."""
    from chat_data import SYSTEM, order

    orders: list[tuple[str, str]] = []
    while True:
        orders += [order(rng) for _ in range(4)]
        messages = [
            {"role": "system", "content": SYSTEM + " Answer with a JSON list, one object per order."},
            {"role": "user", "content": " ".join(text for text, _ in orders)},
            {"role": "assistant", "content": "[" + ", ".join(answer for _, answer in orders) + "]"},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > length:
            return {"messages": messages}


# --- the children: one system each, in its own process ---------------------------------------


def run_child(name: str, workdir: Path, threads: int, seed: int) -> None:
    import psutil
    import torch

    torch.set_num_threads(threads)
    process_start = psutil.Process().create_time()
    common = json.loads((workdir / "common.json").read_text()) | {"seed": seed}
    train_rows = _read_rows(workdir / "train.jsonl")
    trainer = {
        "naive": train_naive,
        "trl-default": train_trl,
        "trl-fast": train_trl,
        "tunery": train_tunery,
        "tunery-bf16": train_tunery,
    }
    model, tokenizer, timing = trainer[name](name, workdir, train_rows, common)
    result = {
        "supervised_tokens": supervised_tokens(workdir / "train.jsonl", tokenizer, common),
        "val_loss": round(validation_loss(model, tokenizer, workdir / "valid.jsonl", common), 5),
        "train_s": round(timing["train_s"], 2),
        "startup_s": round(timing["first_step_begin_at"] - process_start, 2),
        "first_step_s": round(timing["first_step_at"] - process_start, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dtype": "bfloat16" if name in BF16_SYSTEMS else "float32",
        "work": asdict(timing["work"]),
        "setup": asdict(timing["setup"]),
    }
    result["supervised_tokens_per_s"] = round(
        result["supervised_tokens"] * common["epochs"] / result["train_s"], 2
    )
    (workdir / f"{name}.json").write_text(json.dumps(result))


def _read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _encoded(path: Path, tokenizer, common: dict):
    from tunery.data.formats import load_examples
    from tunery.data.tokenize import encode_examples

    return encode_examples(load_examples(str(path)).examples, tokenizer, common["max_length"]).examples


def supervised_tokens(path: Path, tokenizer, common: dict) -> int:
    from tunery.data.batching import supervised_tokens as count

    return count(_encoded(path, tokenizer, common))


def validation_loss(model, tokenizer, path: Path, common: dict) -> float:
    """The one scorer for every system: mean loss per assistant token on the held-out rows."""
    from tunery.nn.loss import causal_lm_parts, mean_loss

    model.float()
    return mean_loss(model, causal_lm_parts(model), _encoded(path, tokenizer, common), tokenizer.pad_token_id)


class WorkRecorder:
    """Wraps a Trainer's data collator and adds up what its batches put through the model.

    `head`: "every" (transformers' forward: logits on every position) or "all_but_last" (TRL's
    chunked head: every position but the last of a row; on CUDA with Triton only supervised ones).
    """

    def __init__(self, collate, head: str):
        from tunery.training.flops import Work

        self.collate, self.head, self.work = collate, head, Work()

    def __call__(self, features):
        batch = self.collate(features)
        self.work += batch_work(batch, self.head)
        return batch


def batch_work(batch: dict, head: str):
    """What one collated batch costs: padded rows and packed rows under a mask score every pair;
    rows without padding (transformers then lets SDPA run causally) score the causal ones."""
    from tunery.training.flops import masked_rows, per_example

    rows, width = batch["input_ids"].shape
    heads = rows * (width - 1 if head == "all_but_last" else width)
    mask = batch.get("attention_mask")
    if mask is not None:
        return per_example([width] * rows, heads) if bool(mask.all()) else masked_rows(rows, width, heads)
    positions = batch.get("position_ids")
    examples = 1 if positions is None else int((positions[0] == 0).sum())
    return per_example([width] * rows, heads) if examples == 1 else masked_rows(rows, width, heads)


def _embedding_grad_probe(model) -> dict:
    """Records once whether the embeddings' output requires grad (then layer 0's q/k/v get an input gradient)."""
    seen: dict = {}

    def record(module, inputs, output) -> None:  # returns None: the output stays as it is
        seen.setdefault("embedding_grad", bool(output.requires_grad))

    model.get_input_embeddings().register_forward_hook(record)
    return seen


def _lora_config(common: dict):
    from peft import LoraConfig

    return LoraConfig(
        r=common["lora_r"],
        lora_alpha=common["lora_alpha"],
        lora_dropout=common["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _load(with_lora: bool, common: dict):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunery.models import resolve_model

    path = resolve_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    if with_lora:
        from peft import get_peft_model

        model = get_peft_model(model, _lora_config(common))
    return model, tokenizer


def _timing_callback():
    from transformers import TrainerCallback

    class Timing(TrainerCallback):
        def __init__(self):
            self.timing = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.timing["begin"] = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            self.timing.setdefault("first_step_begin_at", time.time())

        def on_step_end(self, args, state, control, **kwargs):
            self.timing.setdefault("first_step_at", time.time())

        def on_train_end(self, args, state, control, **kwargs):
            self.timing["train_s"] = time.perf_counter() - self.timing["begin"]

    return Timing()


def _trainer_args(common: dict, workdir: Path) -> dict:
    return {
        "output_dir": str(workdir / "hf-out"),
        "per_device_train_batch_size": common["batch_size"],
        "learning_rate": common["lr"],
        "num_train_epochs": common["epochs"],
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "seed": common["seed"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
    }


def _hf_timing(timing, recorder: WorkRecorder, probe: dict, common: dict, **setup) -> dict:
    """The callback's times, plus the work the run's batches carried and how its step ran."""
    from tunery.training.flops import StepSetup

    step = StepSetup(lora_rank=common["lora_r"], embedding_grad=probe.get("embedding_grad", False), **setup)
    return timing.timing | {"work": recorder.work, "setup": step}


def train_naive(name: str, workdir: Path, rows: list[dict], common: dict):
    """What most tutorials show: chat template to text, pad everything to 512, Trainer."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    model, tokenizer = _load(with_lora=True, common=common)
    texts = [tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in rows]
    dataset = Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], padding="max_length", max_length=512, truncation=True),
        batched=True,
        remove_columns=["text"],
    )
    timing = _timing_callback()
    recorder = WorkRecorder(DataCollatorForLanguageModeling(tokenizer, mlm=False), head="every")
    probe = _embedding_grad_probe(model)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**_trainer_args(common, workdir)),
        train_dataset=dataset,
        data_collator=recorder,
        callbacks=[timing],
    )
    trainer.train()
    return model, tokenizer, _hf_timing(timing, recorder, probe, common)


def train_trl(name: str, workdir: Path, rows: list[dict], common: dict):
    """SFTTrainer on prompt-completion rows (so the loss is on the answer, as in tunery)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _load(with_lora=False, common=common)
    dataset = Dataset.from_list(
        [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]
    )
    options = {"max_length": common["max_length"]}
    if name == "trl-fast":  # fp32, no recomputation, no padding: its fastest CPU settings
        # max_length=None: TRL refuses padding_free with a max_length it cannot enforce (rows are < 1024).
        options = {"max_length": None, "bf16": False, "gradient_checkpointing": False, "padding_free": True}
    timing = _timing_callback()
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**_trainer_args(common, workdir), **options),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(common),
        callbacks=[timing],
    )
    # TRL's chunked head scores every position but a row's last on a CPU (no Triton) and recomputes
    # its logits in backward.
    recorder = WorkRecorder(trainer.data_collator, head="all_but_last")
    trainer.data_collator = recorder
    probe = _embedding_grad_probe(trainer.model)
    trainer.train()
    recompute = bool(trainer.args.gradient_checkpointing)
    return trainer.model, tokenizer, _hf_timing(timing, recorder, probe, common, recompute_body=recompute,
                                                recompute_head=True)  # fmt: skip


def tunery_config(workdir: Path, train_path: Path, common: dict, name: str, dtype: str = "auto") -> dict:
    return {
        "model": {"name": MODEL, "dtype": dtype},
        "data": {"train": str(train_path), "validation_split": 0.0, "max_length": common["max_length"]},
        "lora": {"r": common["lora_r"], "alpha": common["lora_alpha"], "dropout": common["lora_dropout"]},
        "train": {
            "epochs": common["epochs"],
            "batch_size": common["batch_size"],
            "lr": common["lr"],
            "scheduler": "linear",
            "warmup_ratio": 0.0,
            "seed": common["seed"],
        },
        "output_dir": str(workdir),
        "run_name": name,
    }


def train_tunery(name: str, workdir: Path, rows: list[dict], common: dict):
    import shutil

    import tunery
    from tunery.models import load_tokenizer
    from tunery.training.flops import StepSetup, per_example

    shutil.rmtree(workdir / "tunery-out", ignore_errors=True)
    dtype = "bfloat16" if name == "tunery-bf16" else "auto"
    config = tunery_config(workdir / "tunery-out", workdir / "train.jsonl", common, "bench", dtype)
    called = time.time()
    run = tunery.train(config, quiet=True)
    metrics = run.metrics
    model, tokenizer = _load(with_lora=False, common=common)
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, run.adapter_dir)
    # Packed rows, per-example attention, the head on supervised positions only (nn/loss.py).
    examples = _encoded(workdir / "train.jsonl", tokenizer, common)
    work = per_example(
        [len(e.input_ids) for e in examples], supervised_tokens(workdir / "train.jsonl", tokenizer, common)
    )
    timing = {
        "train_s": metrics["train_seconds"],
        "first_step_begin_at": called + metrics["setup_seconds"],
        "first_step_at": called + metrics["first_step_seconds"],
        "work": work,
        "setup": StepSetup(lora_rank=common["lora_r"]),
    }
    return model, load_tokenizer(str(run.adapter_dir)), timing


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
