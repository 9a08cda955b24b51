"""Training speed: tunery against the naive Trainer script and TRL's SFTTrainer, on the same work.

    make bench-train                                    # = .venv/bin/python bench/train_speed.py
    .venv/bin/python bench/train_speed.py --train 48 --repeats 3 --markdown docs/benchmarks.md
    .venv/bin/python bench/train_speed.py --systems tunery trl-fast --train 16   # a quick look

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
steps' loss depends on the seed. MFU counts 4 x (matmul parameters, LM head included)
FLOPs per supervised token, against fp32 GEMM throughput measured between rounds on the
model's own matrix shapes with the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("naive", "trl-default", "trl-fast", "tunery")
OPTIONAL = ("tunery-bf16",)  # model.dtype=bfloat16: only where the CPU has bf16 units (AMX, avx512_bf16)
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


# --- the parent: data, GEMM, rounds, table --------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS + OPTIONAL, default=list(SYSTEMS))
    parser.add_argument("--train", type=int, default=48, help="training rows (one epoch)")
    parser.add_argument("--valid", type=int, default=24, help="held-out rows scored after training")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the table shows medians")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    parser.add_argument("--markdown", type=Path, help="write the table here (docs/benchmarks.md)")
    parser.add_argument("--child", choices=SYSTEMS + OPTIONAL, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=COMMON["seed"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.workdir, args.threads, args.seed)
        return

    from chat_data import make_rows, write_jsonl

    workdir = Path(tempfile.mkdtemp(prefix="tunery-bench-"))
    rows = make_rows(args.train + args.valid, seed=7, two_turn_share=0.0)
    write_jsonl(rows[: args.train], workdir / "train.jsonl")
    write_jsonl(rows[args.train :], workdir / "valid.jsonl")
    (workdir / "common.json").write_text(json.dumps(COMMON))
    print(f"data and runs in {workdir}; {args.threads} threads", flush=True)

    runs: dict[str, list[dict]] = {name: [] for name in args.systems}
    gemm = []
    for round_ in range(args.repeats):
        gemm.append(gemm_gflops(args.threads))
        seed = COMMON["seed"] + round_  # every system gets the same seed in a round; medians span seeds
        print(f"round {round_ + 1}: seed {seed}, fp32 GEMM {gemm[-1]:.1f} GFLOP/s", flush=True)
        order = args.systems if round_ % 2 == 0 else args.systems[::-1]  # interleaved, both directions
        for name in order:
            result = run_system(name, workdir, args.threads, seed)
            runs[name].append(result)
            print(f"  {name:12s} {summary_line(result)}", flush=True)
    gemm.append(gemm_gflops(args.threads))

    table = build_table(runs, statistics.median(gemm), matmul_params())
    text = render(table, gemm, args)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "gemm_gflops": gemm, "table": table}, indent=2))
    if args.markdown:
        args.markdown.write_text(text)


def run_system(name: str, workdir: Path, threads: int, seed: int) -> dict:
    out = workdir / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--workdir",
        str(workdir),
        "--threads",
        str(threads),
        "--seed",
        str(seed),
    ]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout)[-3000:]
        return {"error": f"exit {done.returncode}: {tail}", "wall_s": time.time() - started}
    return json.loads(out.read_text()) | {"wall_s": round(time.time() - started, 2)}


def gemm_gflops(threads: int, tokens: int = 1024, repeats: int = 5) -> float:
    """fp32 matmul throughput on SmolLM2's shapes ([tokens, in] @ [in, out]), median of repeats."""
    import torch

    torch.set_num_threads(threads)
    shapes = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)]
    pairs = [(torch.randn(tokens, k), torch.randn(k, n)) for k, n in shapes]
    flops = sum(2 * tokens * k * n for k, n in shapes)
    for a, b in pairs:
        a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in pairs:
            a @ b
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def matmul_params() -> int:
    """Weights that take part in matrix products: every attention/MLP projection and the LM head."""
    from transformers import AutoConfig

    from tunery.models import resolve_model

    c = AutoConfig.from_pretrained(resolve_model(MODEL))
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    attention = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv
    mlp = 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * (attention + mlp) + c.hidden_size * c.vocab_size


def summary_line(result: dict) -> str:
    if "error" in result:
        return "FAILED " + result["error"].strip().splitlines()[-1]
    return (
        f"{result['supervised_tokens_per_s']:.1f} sup tok/s, train {result['train_s']:.1f} s, "
        f"start-up {result['startup_s']:.1f} s, first step done {result['first_step_s']:.1f} s, RSS {result['peak_rss_mb']:.0f} MB, "
        f"val loss {result['val_loss']:.4f}, wall {result['wall_s']:.0f} s"
    )


def build_table(runs: dict[str, list[dict]], gemm: float, params: int) -> dict:
    table = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            table[name] = {"error": results[-1]["error"].strip().splitlines()[-1]}
            continue
        med = {
            key: statistics.median(r[key] for r in ok) for key in ok[0] if isinstance(ok[0][key], float | int)
        }
        med["runs"] = len(ok)
        med["mfu"] = med["supervised_tokens_per_s"] * 4 * params / (gemm * 1e9)
        med["spread"] = _spread([r["supervised_tokens_per_s"] for r in ok])
        table[name] = med
    return table


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else "-"


def render(table: dict, gemm: list[float], args) -> str:
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, {_cpu_name()}"
    lines = [
        "# Training speed",
        "",
        f"`.venv/bin/python bench/train_speed.py --train {args.train} --valid {args.valid} "
        f"--repeats {args.repeats}` ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {machine}; torch {_version('torch')}, transformers {_version('transformers')}, "
        f"peft {_version('peft')}, trl {_version('trl')}. fp32 GEMM on the model's shapes: "
        f"{statistics.median(gemm):.1f} GFLOP/s (median; measured {', '.join(f'{g:.0f}' for g in gemm)}).",
        "",
        "| system | supervised tok/s (median, range) | train s | start-up s | first step done s "
        "| peak RSS MB | val loss | MFU | tunery / this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ours = table.get("tunery", {}).get("supervised_tokens_per_s")
    for name, row in table.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} | | | | | | | |")
            continue
        ratio = f"{ours / row['supervised_tokens_per_s']:.2f}x" if ours else "-"
        lines.append(
            f"| {name} | {row['supervised_tokens_per_s']:.1f} ({row['spread']}) | {row['train_s']:.1f} "
            f"| {row['startup_s']:.1f} | {row['first_step_s']:.1f} | {row['peak_rss_mb']:.0f} | {row['val_loss']:.4f} "
            f"| {100 * row['mfu']:.1f}% | {ratio} |"
        )
    lines += ["", *goal_lines(table)]
    lines += [
        "",
        f"Medians of {args.repeats} interleaved round(s); {args.train} training rows, one epoch, "
        f"{args.valid} held-out rows. Start-up: process start to the start of the first optimiser "
        "step (imports, model load, tokenisation); first step done: to its end.",
        "",
    ]
    return "\n".join(lines)


def goal_lines(table: dict) -> list[str]:
    """The issue's goals, each with the measured figure and whether it holds."""
    ours, fast, naive = (table.get(name, {}) for name in ("tunery", "trl-fast", "naive"))
    if "supervised_tokens_per_s" not in ours:
        return []
    checks = []
    if "supervised_tokens_per_s" in fast:
        speed = ours["supervised_tokens_per_s"] / fast["supervised_tokens_per_s"]
        loss = ours["val_loss"] / fast["val_loss"] - 1
        rss = ours["peak_rss_mb"] / fast["peak_rss_mb"]
        checks += [
            (f"speed vs TRL-fast {speed:.2f}x (goal 3x)", speed >= 3),
            (f"val loss vs TRL-fast {100 * loss:+.1f}% (goal at most +2%)", loss <= 0.02),
            (f"peak RSS vs TRL-fast {rss:.2f}x (goal at most 1x)", rss <= 1),
        ]
    if "supervised_tokens_per_s" in naive:
        speed = ours["supervised_tokens_per_s"] / naive["supervised_tokens_per_s"]
        checks.append((f"speed vs naive {speed:.2f}x (goal 4x)", speed >= 4))
    checks += [
        (f"MFU {100 * ours['mfu']:.1f}% (goal 60%)", ours["mfu"] >= 0.6),
        (f"start-up {ours['startup_s']:.1f} s (goal under 10 s)", ours["startup_s"] < 10),
    ]
    return ["Goals for tunery:", ""] + [f"- {text}: {'met' if ok else 'NOT met'}" for text, ok in checks]


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
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**_trainer_args(common, workdir)),
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[timing],
    )
    trainer.train()
    return model, tokenizer, timing.timing


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
    trainer.train()
    return trainer.model, tokenizer, timing.timing


def train_tunery(name: str, workdir: Path, rows: list[dict], common: dict):
    import tunery
    from tunery.models import load_tokenizer

    config = {
        "model": {"name": MODEL, "dtype": "bfloat16" if name == "tunery-bf16" else "auto"},
        "data": {
            "train": str(workdir / "train.jsonl"),
            "validation_split": 0.0,
            "max_length": common["max_length"],
        },
        "lora": {"r": common["lora_r"], "alpha": common["lora_alpha"], "dropout": common["lora_dropout"]},
        "train": {
            "epochs": common["epochs"],
            "batch_size": common["batch_size"],
            "lr": common["lr"],
            "scheduler": "linear",
            "warmup_ratio": 0.0,
            "seed": common["seed"],
        },
        "output_dir": str(workdir / "tunery-out"),
        "run_name": "bench",
    }
    import shutil

    shutil.rmtree(workdir / "tunery-out", ignore_errors=True)
    called = time.time()
    run = tunery.train(config, quiet=True)
    metrics = run.metrics
    timing = {
        "train_s": metrics["train_seconds"],
        "first_step_begin_at": called + metrics["setup_seconds"],
        "first_step_at": called + metrics["first_step_seconds"],
    }
    model, tokenizer = _load(with_lora=False, common=common)
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, run.adapter_dir)
    return model, load_tokenizer(str(run.adapter_dir)), timing


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
