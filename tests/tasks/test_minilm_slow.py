"""The bundled MiniLM encoder with LoRA learns a small three-topic labelled set (slow: real weights)."""

from __future__ import annotations

import itertools
import random

import pytest

import tunery
from tests.conftest import write_jsonl

TOPICS = {
    "sport": (["The team", "Our striker", "The coach", "The goalkeeper"],
              ["won the match", "scored twice in the final", "trained on the pitch", "lost the league game"]),
    "food": (["The chef", "My grandmother", "The bakery", "This restaurant"],
             ["baked fresh bread", "cooked a spicy curry", "served a chocolate cake", "made tomato soup"]),
    "weather": (["The forecast", "This morning", "The storm", "Tonight"],
                ["brings heavy rain", "was cold and windy", "will be sunny and warm", "turned to snow and fog"]),
}  # fmt: skip


def topic_rows(seed: int) -> list[dict]:
    rows = [
        {"text": f"{subject} {rest}.", "label": label}
        for label, (subjects, rests) in TOPICS.items()
        for subject, rest in itertools.product(subjects, rests)
    ]
    random.Random(seed).shuffle(rows)
    return rows


@pytest.mark.slow
def test_minilm_with_lora_beats_chance_and_reports_accuracy_and_macro_f1(tmp_path):
    rows = topic_rows(0)  # 48 sentences, 16 per topic
    train = write_jsonl(tmp_path / "train.jsonl", rows[:33])
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[33:])
    config = {
        "model": "minilm-l6",
        "task": "classification",
        "method": "lora",
        "data": {"train": str(train), "validation": str(valid), "max_length": 32},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"epochs": 8, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.1, "seed": 1},
        "output_dir": str(tmp_path / "runs"),
        "run_name": "minilm",
    }
    metrics = tunery.train(config, quiet=True).metrics
    assert metrics["accuracy"] >= 0.7, metrics  # chance is 1/3
    assert metrics["macro_f1"] >= 0.6, metrics
