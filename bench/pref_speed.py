"""Preference-tuning speed: tunery DPO against TRL's DPOTrainer on the same pairs and settings.

    make bench-pref                                       # = .venv/bin/python bench/pref_speed.py
    .venv/bin/python bench/pref_speed.py --rounds 2 --steps 16 --batch-size 4   # a quick look

Both train SmolLM2-135M-Instruct in fp32 with the same LoRA (r=16, alpha=32, dropout 0, all
linear layers), DPO with the same beta, learning rate (constant, no warm-up), seed, steps and
batch, on the same pairs: examples/data's orders with the right JSON answer chosen over a
corrupted one (examples/make_preference_pairs.py). TRL runs as its docs show for PEFT (the
reference is the adapter switched off, computed every step), with gradient checkpointing off
and bf16 off so that both do the same arithmetic. Each system trains in its own process, so
peak RSS is that child's `ru_maxrss`, cold start included. Afterwards another process scores
each saved adapter with the same function (tunery.evaluate.preference.score_sides) on the
held-out pairs: reward accuracy is the share of pairs whose DPO implicit reward
β((tc − bc) − (tr − br)) against the base is positive. Rounds interleave the systems (the
order flips each round) and the table shows medians, because the machine may be shared. Every
training child starts with empty caches (its own TUNERY_HOME and HF_DATASETS_CACHE): a round never
reads the tokens or reference log-probs an earlier one computed.

pairs/s (end to end) = training pairs / the wall time from loading the model to the saved
adapter (tokenising, tunery's reference pass, training); pairs/s (loop) counts the training
loop alone.
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
sys.path.insert(0, str(ROOT / "examples"))
SYSTEMS = ("tunery", "trl")
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
GOALS = "pairs/s >= 2x TRL's, peak RSS <= TRL's, held-out reward accuracy >= TRL's - 0.02"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--valid", type=int, default=40, help="held-out pairs scored after training")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    parser.add_argument("--child", choices=(*SYSTEMS, "score"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    parser.add_argument("--adapter", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        settings = json.loads((args.workdir / "settings.json").read_text())
        {"tunery": train_tunery, "trl": train_trl, "score": score_adapter}[args.child](args, settings)
        return
    workdir = Path(tempfile.mkdtemp(prefix="tunery-bench-pref-"))
    write_data(workdir, args)
    print(f"data and runs in {workdir}; {args.threads} threads; {args.steps} steps x {args.batch_size} pairs",
          flush=True)  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in SYSTEMS}
    for round_ in range(args.rounds):
        seed = args.seed + round_
        for name in SYSTEMS if round_ % 2 == 0 else SYSTEMS[::-1]:
            result = run_child(name, workdir, args.threads, seed)
            if "error" not in result:
                result |= run_child("score", workdir, args.threads, seed, Path(result["adapter"]))
            runs[name].append(result)
            print(f"  round {round_ + 1} {name:7s} {summary_line(result)}", flush=True)
    table = medians(runs)
    print("\n" + render(table, args))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "table": table}, indent=2))


def write_data(workdir: Path, args) -> None:
    """The pairs, in tunery's shape and in TRL's conversational shape, and the shared settings."""
    from make_preference_pairs import DATA, make_pairs, read_chats

    train = make_pairs(read_chats(DATA / "train.jsonl"), seed=0)[: args.steps * args.batch_size]
    valid = make_pairs(read_chats(DATA / "valid.jsonl"), seed=1)[: args.valid]
    for name, rows in (("train", train), ("valid", valid)):
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (workdir / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    trl_rows = [{"prompt": row["messages"], "chosen": [{"role": "assistant", "content": row["chosen"]}],
                 "rejected": [{"role": "assistant", "content": row["rejected"]}]} for row in train]  # fmt: skip
    (workdir / "train-trl.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in trl_rows), encoding="utf-8"
    )
    settings = {"steps": args.steps, "batch_size": args.batch_size, "beta": args.beta, "lr": args.lr,
                "max_length": args.max_length, "pairs": len(train)}  # fmt: skip
    (workdir / "settings.json").write_text(json.dumps(settings))


def run_child(name: str, workdir: Path, threads: int, seed: int, adapter: Path | None = None) -> dict:
    out = workdir / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", name, "--workdir", str(workdir), "--threads", str(threads),
               "--seed", str(seed), *(["--adapter", str(adapter)] if adapter else [])]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=cold_caches(workdir, name, seed)
    )
    if done.returncode != 0 or not out.exists():
        return {"error": f"{name}: exit {done.returncode}: {(done.stderr or done.stdout)[-3000:]}"}
    return json.loads(out.read_text())


def cold_caches(workdir: Path, name: str, seed: int) -> dict[str, str]:
    """Each training child starts cold: its own tunery home (no cached tokens or reference log-probs
    from an earlier round) and its own datasets cache (no mapped TRL dataset); the converted model
    is shared. The scoring child reuses its run's."""
    from tunery.models import tunery_home

    models = tunery_home() / "models"
    models.mkdir(parents=True, exist_ok=True)
    home = workdir / "homes" / f"{name if name != 'score' else 'scored'}-{seed}"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models, target_is_directory=True)
    return {**os.environ, "TUNERY_HOME": str(home), "HF_DATASETS_CACHE": str(home / "hf-datasets")}


def finish_child(args, name: str, result: dict) -> None:
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    (args.workdir / f"{name}.json").write_text(json.dumps(result | {"peak_rss_mib": round(peak_mib, 1)}))


def train_tunery(args, s: dict) -> None:
    import tunery

    started = time.perf_counter()
    run = tunery.train(
        {
            "model": "smollm2-135m-instruct", "task": "preference", "preference": {"loss": "dpo", "beta": s["beta"]},
            "data": {"train": str(args.workdir / "train.jsonl"), "validation_split": 0.0,
                     "max_length": s["max_length"]},
            "lora": {**LORA, "target_modules": "all-linear"},
            "train": {"max_steps": s["steps"], "batch_size": s["batch_size"], "lr": s["lr"], "scheduler": "constant",
                      "warmup_ratio": 0.0, "seed": args.seed, "threads": args.threads, "save_every": 10**6},
            "output_dir": str(args.workdir / "runs"), "run_name": f"tunery-{args.seed}",
        },
        quiet=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    loop = run.metrics["train_seconds"]
    result = {"system": "tunery", "adapter": str(run.path / "adapter")} | rates(s["pairs"], wall, loop)
    finish_child(args, "tunery", result)


def train_trl(args, s: dict) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tunery.models import resolve_model

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    path = resolve_model("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    out = args.workdir / f"trl-{args.seed}"
    config = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=s["batch_size"], max_steps=s["steps"],
        learning_rate=s["lr"], lr_scheduler_type="constant", warmup_steps=0, beta=s["beta"],
        max_length=s["max_length"], bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        seed=args.seed, logging_steps=1, save_strategy="no", report_to=[], dataloader_num_workers=0,
    )  # fmt: skip
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")  # fmt: skip
    pairs = load_dataset("json", data_files=str(args.workdir / "train-trl.jsonl"), split="train")
    trainer = DPOTrainer(
        model=model, args=config, train_dataset=pairs, processing_class=tokenizer, peft_config=lora
    )
    loop = trainer.train().metrics["train_runtime"]
    trainer.save_model(str(out / "adapter"))
    wall = time.perf_counter() - started
    result = {"system": "trl", "adapter": str(out / "adapter")} | rates(s["pairs"], wall, loop)
    finish_child(args, "trl", result)


def score_adapter(args, s: dict) -> None:
    """Held-out reward accuracy and win rate of a saved adapter, the same code for both systems."""
    import torch
    from peft import PeftModel

    from tunery.config import load_config
    from tunery.data.preference import load_preferences_checked
    from tunery.data.preference_tokens import encode_preferences
    from tunery.evaluate.preference import preference_summary, score_sides
    from tunery.models import load_tokenizer, resolve_model
    from tunery.nn.loss import causal_lm_parts
    from tunery.tasks import preference

    torch.set_num_threads(args.threads)
    path = resolve_model("smollm2-135m-instruct")
    config = load_config({"model": path, "task": "preference", "data": {"train": "unused"}})
    base = preference.load_model(path, torch.device("cpu"), torch.float32, config)
    model = PeftModel.from_pretrained(base, str(args.adapter)).eval()
    tokenizer = load_tokenizer(path)
    loaded = load_preferences_checked(args.workdir / "valid.jsonl")
    pairs = encode_preferences(loaded.examples, tokenizer, s["max_length"]).examples
    parts = causal_lm_parts(model)
    tuned = score_sides(model, parts, pairs)  # type: ignore[arg-type]
    with model.disable_adapter():
        untuned = score_sides(model, parts, pairs)  # type: ignore[arg-type]
    summary = preference_summary(tuned, untuned, s["beta"])
    result = {"reward_accuracy": summary["tuned"]["reward_accuracy"], "win_rate": summary["tuned"]["win_rate"],
              "base_win_rate": summary["base"]["win_rate"], "held_out": len(pairs)}  # fmt: skip
    (args.workdir / "score.json").write_text(json.dumps(result))


def rates(pairs: int, wall: float, loop: float) -> dict:
    return {"wall_s": round(wall, 2), "loop_s": round(loop, 2), "pairs_per_s": round(pairs / wall, 3),
            "loop_pairs_per_s": round(pairs / loop, 3)}  # fmt: skip


def summary_line(result: dict) -> str:
    if "error" in result:
        return result["error"]
    return (f"{result['pairs_per_s']:.3f} pairs/s ({result['loop_pairs_per_s']:.3f} in the loop), "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB, held-out reward accuracy {result['reward_accuracy']:.3f}")  # fmt: skip


COLUMNS = ("pairs_per_s", "loop_pairs_per_s", "wall_s", "peak_rss_mib", "reward_accuracy", "win_rate",
           "base_win_rate")  # fmt: skip


def medians(runs: dict[str, list[dict]]) -> dict[str, dict]:
    table = {}
    for name, results in runs.items():
        good = [r for r in results if "error" not in r]
        if good:
            table[name] = {k: statistics.median(r[k] for r in good) for k in COLUMNS} | {"rounds": len(good)}
    return table


def render(table: dict[str, dict], args) -> str:
    lines = [f"DPO, SmolLM2-135M-Instruct, fp32, LoRA r=16 alpha=32 all-linear, beta {args.beta}, "
             f"{args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}, {args.threads} threads, "
             f"{platform.processor() or platform.machine()}; medians of {args.rounds} round(s)", "",
             "| system | " + " | ".join(COLUMNS) + " | rounds |", "|---|" + "---:|" * (len(COLUMNS) + 1)]  # fmt: skip
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.4g}" for k in COLUMNS) + f" | {row['rounds']} |")
    if {"tunery", "trl"} <= set(table):
        lines += ["", f"goals ({GOALS}):", *goal_lines(table["tunery"], table["trl"])]
    return "\n".join(lines)


def goal_lines(ours: dict, theirs: dict) -> list[str]:
    speed = ours["pairs_per_s"] / theirs["pairs_per_s"]
    loop = ours["loop_pairs_per_s"] / theirs["loop_pairs_per_s"]
    memory = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
    accuracy = ours["reward_accuracy"] - theirs["reward_accuracy"]
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return [
        f"  speed:    {speed:.2f}x TRL's pairs/s end to end ({loop:.2f}x in the loop): {verdict(speed >= 2)}",
        f"  memory:   {memory:.2f}x TRL's peak RSS: {verdict(memory <= 1)}",
        f"  accuracy: {accuracy:+.3f} against TRL's held-out reward accuracy: {verdict(accuracy >= -0.02)}",
    ]


if __name__ == "__main__":
    main()
