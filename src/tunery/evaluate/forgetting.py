"""Forgetting check: perplexity on everyday English that tunery ships, base versus tuned.

Fine-tuning on a narrow task can make a model worse at everything else, and a
task's own test set cannot show it. `general_text.jsonl` holds a few dozen
paragraphs on everyday topics, written for tunery and free to use. A tuned
perplexity well above the base one means the adapter has pulled the model away
from general language.
"""

from __future__ import annotations

import json
from importlib.resources import files

from tunery.data.types import Example

GENERAL_TEXT = "general_text.jsonl"


def general_text_examples() -> list[Example]:
    text = files("tunery.evaluate").joinpath(GENERAL_TEXT).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Example(line=i, kind="text", text=row["text"]) for i, row in enumerate(rows, start=1)]


def forgetting_summary(base_perplexity: float | None, tuned_perplexity: float) -> dict:
    """Both perplexities and the tuned one's change in percent (positive: general text got harder)."""
    change = None if base_perplexity is None else 100 * (tuned_perplexity / base_perplexity - 1)
    return {
        "base_perplexity": base_perplexity,
        "tuned_perplexity": tuned_perplexity,
        "change_percent": change,
    }
