"""Chat data with a realistic length spread for the training-speed benchmark.

    rows = make_rows(n=256, seed=7)   # list of {"messages": [...]}

The example data (examples/data) is one order per row, ~70 tokens each: every
batch is the same length, so it hides what padding and packing cost. Here a row
holds a lognormally distributed number of orders (median 2, long tail to 24),
so rows run from ~60 to ~900 tokens, about half of them the assistant's answer,
and a tenth are two-turn chats. Same generator as examples/make_example_data.py,
so the rows are ours to license.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from make_example_data import SYSTEM, order  # noqa: E402

MAX_ORDERS = 24


def n_orders(rng: random.Random) -> int:
    return max(1, min(MAX_ORDERS, round(math.exp(rng.gauss(math.log(2.2), 0.9)))))


def turn(rng: random.Random) -> tuple[str, str]:
    orders = [order(rng) for _ in range(n_orders(rng))]
    prose = " ".join(text for text, _ in orders)
    answer = "[" + ", ".join(answer for _, answer in orders) + "]"
    return prose, answer


def make_rows(n: int, seed: int, two_turn_share: float = 0.1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        messages = [{"role": "system", "content": SYSTEM + " Answer with a JSON list, one object per order."}]
        for _ in range(2 if rng.random() < two_turn_share else 1):
            prose, answer = turn(rng)
            messages += [{"role": "user", "content": prose}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
