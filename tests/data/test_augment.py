"""Augmentation: token operations, model rewrites, origin tracking and the no-leak rule."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import write_jsonl
from tests.data.conftest import qa
from tunery.data.augment import augment_file, delete_words, replace_synonyms, swap_words
from tunery.data.fields import row_hash
from tunery.data.fields import write_jsonl as write_rows
from tunery.data.formats import load_examples
from tunery.data.split import rows_to_split, split_rows
from tunery.data.synonyms import synonyms_of

ROWS = [
    qa("Please send the big box to my house quickly", "Sent."),
    qa("I want to buy 3 small bags of rice", '{"item": "rice", "quantity": 3}'),
    qa("Can you help me find a cheap car", "Try the used market."),
]


@pytest.fixture
def train_file(tmp_path):
    return str(write_jsonl(tmp_path / "train.jsonl", ROWS))


def test_swap_keeps_the_words_and_the_layout():
    text = "one two three four five\nsix seven"
    swapped = swap_words(text, random.Random(0), alpha=0.3)
    assert swapped != text
    assert sorted(swapped.split()) == sorted(text.split())
    assert swapped.count("\n") == 1


def test_delete_removes_words_but_never_all_of_them_nor_numbers():
    text = "buy 3 bags of rice for 12 euros"
    shorter = delete_words(text, random.Random(1), alpha=0.5)
    assert len(shorter.split()) < len(text.split())
    assert "3" in shorter.split() and "12" in shorter.split()
    assert delete_words("alone", random.Random(0)) == "alone"


def test_synonyms_come_from_the_lexicon_both_ways_and_keep_case_and_punctuation():
    assert "purchase" in synonyms_of("buy") and "buy" in synonyms_of("purchase")
    replaced = replace_synonyms("Big house, please!", random.Random(0), alpha=1.0)
    first, second, third = replaced.split()
    assert first in {"Large", "Huge", "Sizeable"} and second.endswith(",") and third.endswith("!")
    assert replace_synonyms("zxq qwv", random.Random(0)) == "zxq qwv"


def test_augmented_rows_carry_strategy_parent_and_keep_the_answer(train_file):
    result = augment_file(train_file, ["swap", "synonym"], seed=0)
    originals, added = result.rows[:3], result.rows[3:]
    assert originals == ROWS
    assert added, "token operations on these rows always produce something"
    hashes = {row_hash(e): e for e in load_examples(train_file).examples}
    for row in added:
        origin = row["augmentation"]
        assert origin["strategy"] in {"swap", "synonym"}
        parent = hashes[origin["parent"]]
        assert origin["parent_line"] == parent.line
        assert row["messages"][-1]["content"] == parent.messages[-1].content  # the answer is kept
        assert row["messages"][0]["content"] != parent.messages[0].content


def test_the_same_seed_augments_the_same_way(train_file):
    assert augment_file(train_file, ["swap"], seed=3).rows == augment_file(train_file, ["swap"], seed=3).rows


def test_duplicates_and_empty_rewrites_are_rejected_and_counted_per_strategy(train_file):
    echo = {"paraphrase": lambda texts: [t.upper() for t in texts]}  # equal to the original once normalised
    blank = {"backtranslate": lambda texts: ["  " for _ in texts]}
    result = augment_file(train_file, ["paraphrase", "backtranslate"], rewriters=echo | blank)
    assert len(result.rows) == 3
    assert (result.stats["paraphrase"].produced, result.stats["paraphrase"].rejected_duplicate) == (0, 3)
    assert (result.stats["backtranslate"].produced, result.stats["backtranslate"].rejected_empty) == (0, 3)


def test_two_variants_that_come_out_equal_count_once(train_file):
    same = {"paraphrase": lambda texts: [f"rewritten: {t.split()[0]}" for t in texts]}
    result = augment_file(train_file, ["paraphrase"], per_row=2, rewriters=same)
    assert (result.stats["paraphrase"].produced, result.stats["paraphrase"].rejected_duplicate) == (3, 3)


def test_model_strategies_need_a_model(train_file):
    with pytest.raises(ValueError, match="need a model"):
        augment_file(train_file, ["paraphrase"])


def test_augmented_rows_never_reach_validation_or_test(tmp_path, train_file):
    many = [qa(f"please send box number {i} to the big house quickly", f"ok {i}") for i in range(30)]
    source = str(write_jsonl(tmp_path / "many.jsonl", many))
    augmented = write_rows(augment_file(source, ["swap", "synonym"], seed=0).rows, tmp_path / "aug.jsonl")
    rows, records = rows_to_split(str(augmented))
    splits = split_rows(rows, validation=0.2, test=0.2, seed=5)
    held_out = [records[line] for line in splits.validation + splits.test]
    assert held_out and not any("augmentation" in r for r in held_out)
    held_hashes = {row.content for row in rows if row.line in set(splits.validation + splits.test)}
    for line in splits.train:
        origin = records[line].get("augmentation")
        assert origin is None or origin["parent"] not in held_hashes
    assert splits.dropped_augmented  # children of held-out rows were left out, not put in train


def test_paraphrase_through_a_local_model_runs_end_to_end(train_file, tiny_model_dir):
    from tunery.data.generation import load_rewriter

    rewriter = load_rewriter(str(tiny_model_dir), max_new_tokens=8, seed=0)
    result = augment_file(train_file, ["paraphrase"], rewriters={"paraphrase": rewriter})
    stats = result.stats["paraphrase"]
    assert stats.produced + stats.rejected_duplicate + stats.rejected_empty == 3
    for row in result.rows[3:]:
        assert row["augmentation"]["strategy"] == "paraphrase"
        json.dumps(row)  # every row can be written back
