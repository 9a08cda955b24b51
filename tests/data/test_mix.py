"""Mixing: exact row counts from shares or fixed counts, recorded as a new version with its recipe."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.conftest import write_jsonl
from tests.data.conftest import qa
from tunery.data.mix import MixPart, mix_sources, plan_counts, take_rows


def rows(tag: str, n: int) -> list[dict]:
    return [qa(f"{tag} question {i}", f"{tag} answer {i}") for i in range(n)]


def count_by_tag(examples) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in examples:
        tag = e.messages[0].content.split()[0]
        counts[tag] = counts.get(tag, 0) + 1
    return counts


def test_shares_with_a_total_give_exact_counts():
    assert plan_counts([500, 500], [MixPart("a", share=0.8), MixPart("b", share=0.2)], total=100) == [80, 20]


def test_shares_that_do_not_divide_evenly_still_sum_to_the_total():
    parts = [MixPart(s, share=1 / 3) for s in "abc"]
    assert plan_counts([100] * 3, parts, total=100) == [34, 33, 33]


def test_counts_are_fixed_and_shares_split_the_rest():
    parts = [MixPart("a", count=30), MixPart("b", share=0.5), MixPart("c", share=0.5)]
    assert plan_counts([100] * 3, parts, total=70) == [30, 20, 20]


def test_shares_without_a_total_give_the_largest_mix_without_repeats():
    # b has 50 rows for a 25% share, so the mix holds 200 rows: 150 from a, 50 from b.
    assert plan_counts([1000, 50], [MixPart("a", share=0.75), MixPart("b", share=0.25)]) == [150, 50]


@pytest.mark.parametrize(
    ("parts", "total", "message"),
    [
        ([MixPart("a", share=0.5), MixPart("b", share=0.4)], 10, "add up to 0.9"),
        ([MixPart("a", count=5), MixPart("b", share=1.0)], None, "needs a total"),
        ([MixPart("a", count=50)], 10, "exceed the total"),
    ],
)
def test_impossible_recipes_are_refused(parts, total, message):
    with pytest.raises(ValueError, match=message):
        plan_counts([100] * len(parts), parts, total)


def test_a_source_asked_for_more_rows_than_it_has_is_repeated_whole():
    taken = take_rows(3, 7, random.Random(0))
    assert sorted(Counter(taken).values()) == [2, 2, 3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders@2=0.8", MixPart("orders@2", share=0.8)),
        ("general=25%", MixPart("general", share=0.25)),
        ("data/x.jsonl=200", MixPart("data/x.jsonl", count=200)),
    ],
)
def test_mix_parts_parse_shares_and_counts(text, expected):
    assert MixPart.parse(text) == expected


def test_mixing_registered_datasets_and_files_is_exact_and_recorded(store, tmp_path):
    store.add("orders", write_jsonl(tmp_path / "orders.jsonl", rows("orders", 40)))
    general = write_jsonl(tmp_path / "general.jsonl", rows("general", 40))
    parts = [MixPart("orders@1", share=0.75), MixPart(str(general), share=0.25)]
    mixed = mix_sources(parts, total=40, seed=1)
    assert count_by_tag(mixed.examples) == {"orders": 30, "general": 10}
    assert [s["count"] for s in mixed.recipe["sources"]] == [30, 10]
    assert mixed.recipe["sources"][0]["dataset"] == "orders@1"
    assert mix_sources(parts, total=40, seed=1).examples == mixed.examples  # same seed, same mix


def test_rows_of_different_kinds_cannot_be_mixed(tmp_path):
    chat = write_jsonl(tmp_path / "chat.jsonl", rows("chat", 4))
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "plain"}])
    with pytest.raises(ValueError, match="different kinds"):
        mix_sources([MixPart(str(chat), share=0.5), MixPart(str(text), share=0.5)], total=4)
