"""Preference pairs from the example orders: the right JSON answer chosen over a corrupted one.

    python examples/make_preference_pairs.py            # writes examples/data/pairs-{train,valid}.jsonl
    from make_preference_pairs import make_pairs        # (with examples/ on sys.path) for tests and bench

Each pair keeps an example chat up to its last user turn as the prompt; `chosen` is the
row's own answer, `rejected` the same JSON with one field made wrong (another customer,
item or city from the data, or a different quantity), the realistic error a weak
extractor makes. Both answers have the same shape, so the preference is about content,
not length. The slow DPO test (tests/slow/test_preference_smollm2.py) and
bench/pref_speed.py build their pairs here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA = Path(__file__).parent / "data"
FIELDS = ("customer", "item", "quantity", "city")


def read_chats(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corrupt(answer: dict, pool: dict[str, list], rng: random.Random) -> dict:
    """The same answer with one field changed to a wrong value."""
    wrong = dict(answer)
    field = rng.choice(FIELDS)
    if field == "quantity":
        wrong[field] = rng.choice([q for q in range(1, 13) if q != answer[field]])
    else:
        wrong[field] = rng.choice([value for value in pool[field] if value != answer[field]])
    return wrong


def make_pairs(chats: list[dict], seed: int = 0) -> list[dict]:
    """One `messages` + `chosen` + `rejected` row per chat (the prompt: every turn before the last answer)."""
    rng = random.Random(seed)
    answers = [json.loads(chat["messages"][-1]["content"]) for chat in chats]
    pool = {field: sorted({a[field] for a in answers if field != "quantity"}) for field in FIELDS}
    rows = []
    for chat, answer in zip(chats, answers, strict=True):
        rejected = corrupt(answer, pool, rng)
        rows.append(
            {
                "messages": chat["messages"][:-1],
                "chosen": json.dumps(answer),
                "rejected": json.dumps(rejected),
            }
        )
    return rows


def write_pairs(out: Path, rows: list[dict]) -> Path:
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return out


def main(out: Path = DATA) -> None:
    for split, seed in (("train", 0), ("valid", 1)):
        write_pairs(out / f"pairs-{split}.jsonl", make_pairs(read_chats(DATA / f"{split}.jsonl"), seed))


if __name__ == "__main__":
    main()
