"""Splits: deterministic, stratified within one row, grouped without overlap, augmented rows only in train."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import write_jsonl
from tests.data.conftest import qa
from tunery.data.split import SplitRow, rows_to_split, split_rows, write_splits

shares = st.tuples(st.floats(0.0, 0.45), st.floats(0.0, 0.45))
seeds = st.integers(0, 2**32 - 1)


def labelled_rows(labels: list[str]) -> list[SplitRow]:
    return [SplitRow(line=i + 1, content=f"row {i}", label=label) for i, label in enumerate(labels)]


def all_lines(splits) -> list[int]:
    return sorted(splits.train + splits.validation + splits.test)


@settings(max_examples=150, deadline=None)
@given(labels=st.lists(st.sampled_from("abc"), min_size=1, max_size=60), shares=shares, seed=seeds)
def test_stratified_splits_keep_every_label_within_one_row_of_its_share(labels, shares, seed):
    validation, test = shares
    splits = split_rows(labelled_rows(labels), validation, test, seed, stratify=True)
    assert all_lines(splits) == list(range(1, len(labels) + 1))  # each row exactly once
    label_of = dict(enumerate(labels, start=1))
    for label, n in Counter(labels).items():
        for lines, share in (
            (splits.validation, validation),
            (splits.test, test),
            (splits.train, 1 - validation - test),
        ):
            assert abs(sum(label_of[line] == label for line in lines) - share * n) <= 1


@settings(max_examples=150, deadline=None)
@given(groups=st.lists(st.integers(0, 9), min_size=2, max_size=60), shares=shares, seed=seeds)
def test_grouped_splits_never_put_a_group_in_two_splits(groups, shares, seed):
    rows = [SplitRow(line=i + 1, content=f"row {i}", group=str(g)) for i, g in enumerate(groups)]
    splits = split_rows(rows, *shares, seed=seed, group=True)
    assert all_lines(splits) == list(range(1, len(groups) + 1))
    group_of = dict(enumerate(groups, start=1))
    seen = [{group_of[line] for line in part} for part in (splits.train, splits.validation, splits.test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert splits.train  # the last group always lands in train


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 80), shares=shares, seed=seeds)
def test_the_same_seed_gives_the_same_split_and_a_cut_is_exact(n, shares, seed):
    rows = [SplitRow(line=i + 1, content=f"row {i}") for i in range(n)]
    first, second = split_rows(rows, *shares, seed=seed), split_rows(rows, *shares, seed=seed)
    assert first == second
    assert len(first.train) >= 1 and all_lines(first) == list(range(1, n + 1))
    assert abs(len(first.validation) - shares[0] * n) <= 1


def test_a_different_seed_gives_a_different_split():
    rows = [SplitRow(line=i + 1, content=f"row {i}") for i in range(100)]
    assert split_rows(rows, 0.2, seed=1).validation != split_rows(rows, 0.2, seed=2).validation


def test_dedup_drops_repeated_rows_before_splitting():
    rows = [SplitRow(1, "a"), SplitRow(2, "b"), SplitRow(3, "a"), SplitRow(4, "c"), SplitRow(5, "a")]
    splits = split_rows(rows, 0.0, dedup=True)
    assert splits.train == [1, 2, 4] and splits.dropped_duplicates == [3, 5]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 30), children=st.lists(st.integers(0, 29), max_size=40), shares=shares, seed=seeds)
def test_augmented_rows_never_land_in_validation_or_test(n, children, shares, seed):
    rows = [SplitRow(line=i + 1, content=f"row {i}") for i in range(n)]
    augmented = [
        SplitRow(line=n + k + 1, content=f"aug {k}", parent=f"row {parent % n}")
        for k, parent in enumerate(children)
    ]
    splits = split_rows(rows + augmented, *shares, seed=seed)
    augmented_lines = {row.line for row in augmented}
    assert not augmented_lines & set(splits.validation + splits.test)
    train_contents = {f"row {line - 1}" for line in splits.train if line <= n}
    for row in augmented:  # in train exactly when its parent is
        assert (row.line in splits.train) == (row.parent in train_contents)
        assert (row.line in splits.dropped_augmented) == (row.parent not in train_contents)


def test_shares_that_leave_no_train_rows_are_refused():
    with pytest.raises(ValueError, match="sum below 1"):
        split_rows([SplitRow(1, "a")], 0.5, 0.5)


def test_a_file_splits_by_a_field_and_writes_one_file_per_split(tmp_path):
    rows = [qa(f"question {i}", f"answer {i}", user=f"u{i % 4}") for i in range(20)]
    to_split, records = rows_to_split(str(write_jsonl(tmp_path / "all.jsonl", rows)), group_field="user")
    splits = split_rows(to_split, 0.25, 0.25, seed=0, group=True)
    written = write_splits(splits, records, str(tmp_path / "out"))
    assert set(written) == {"train", "validation", "test"}
    users = {
        name: {json.loads(line)["user"] for line in Path(path).read_text().splitlines()}
        for name, path in written.items()
    }
    assert sum(len(u) for u in users.values()) == 4  # four users, none in two files


def test_splitting_by_a_field_some_row_lacks_names_the_row(tmp_path):
    from tunery.data.types import DataFileError

    file = write_jsonl(tmp_path / "all.jsonl", [qa("q1", "a1", user="u1"), qa("q2", "a2")])
    with pytest.raises(DataFileError, match=r"all.jsonl:2: has no field 'user'"):
        rows_to_split(str(file), group_field="user")
