"""Every fine-tuning method on SmolLM2-135M-Instruct with the example data: the table in docs/methods.md.

    .venv/bin/python bench/methods_table.py                  # all methods, writes docs/methods.md
    .venv/bin/python bench/methods_table.py --methods lora ia3 --steps 4

Each method trains the same few steps (same seed, data order and learning rate) and is then
evaluated on the same slice of examples/data/valid.jsonl. A few steps on a CPU say how fast a
method runs and which way its loss moves, not where it would end: the table is for comparing
cost, with the losses as a sanity check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import tunery
from tunery.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"
# Learning rates per method family: prompt methods need a larger one, full fine-tuning a smaller one.
LR = {
    "full": 5e-5,
    "freeze": 1e-4,
    "progressive": 1e-4,
    "prefix": 1e-2,
    "prompt": 3e-2,
    "ptuning": 1e-2,
    "ia3": 1e-2,
}


def run_method(method: str, steps: int, batch_size: int, valid: Path, out: Path) -> dict:
    config = {
        "model": "smollm2-135m-instruct",
        "method": method,
        "data": {"train": str(DATA / "train.jsonl"), "validation": str(valid), "max_length": 256},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "freeze": {"top_layers": 2, "unfreeze_every": 2},
        "train": {
            "max_steps": steps, "batch_size": batch_size, "lr": LR.get(method, 1e-3),
            "warmup_ratio": 0.0, "scheduler": "constant", "seed": 42, "keep_checkpoints": 1,
        },
        "output_dir": str(out),
        "run_name": method,
    }  # fmt: skip
    run = tunery.train(config, quiet=True)
    record = run.record
    losses = [row["loss"] for row in run.history() if "loss" in row]
    return {
        "method": method,
        "trainable": record["parameters"]["trainable"],
        "percent": record["parameters"]["percent"],
        "tokens_per_s": record["metrics"]["tokens_per_s"],
        "first_train_loss": losses[0],
        "val_loss": record["metrics"]["val_loss"],
    }


def markdown(rows: list[dict], command: str, steps: int, batch_size: int, n_valid: int) -> str:
    lines = [
        "# Fine-tuning methods compared",
        "",
        f"SmolLM2-135M-Instruct (fp32, CPU) on `examples/data`: {steps} steps of batch {batch_size}, "
        f"validation loss on the first {n_valid} rows of `valid.jsonl` after training. "
        "Tokens/s counts supervised (answer) tokens per second of training, as `tunery train` reports it.",
        "",
        f"Produced by: `{command}`",
        "",
        "| method | trainable params | % | tokens/s | first train loss | final validation loss |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | – | – | – | – | {row['error']} |")
            continue
        lines.append(
            f"| {row['method']} | {row['trainable']:,} | {row['percent']:.3f} | {row['tokens_per_s']:.1f} "
            f"| {row['first_train_loss']:.3f} | {row['val_loss']:.3f} |"
        )
    lines += [
        "",
        "`tunery methods --model smollm2-135m-instruct` lists the same methods with a memory estimate.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--valid-rows", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "docs" / "methods.md"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunery-bench-"))
    valid = work / "valid.jsonl"
    valid.write_text("".join((DATA / "valid.jsonl").read_text().splitlines(keepends=True)[: args.valid_rows]))
    rows = []
    for method in args.methods:
        try:
            rows.append(run_method(method, args.steps, args.batch_size, valid, work / "runs"))
        except Exception as err:  # noqa: BLE001 - one failing method is a row of the table
            rows.append({"method": method, "error": f"{type(err).__name__}: {err}"[:120]})
        print(json.dumps(rows[-1]), flush=True)
        # Rewritten after every method: a long run that is stopped still leaves a usable table.
        command = ("python bench/methods_table.py " + " ".join(sys.argv[1:])).strip()
        Path(args.out).write_text(markdown(rows, command, args.steps, args.batch_size, args.valid_rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
