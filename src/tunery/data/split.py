"""Deterministic train/validation/test splits: by seed, stratified by label or grouped by a key.

    rows = [SplitRow(line=1, content="…", label="spam"), ...]     # or split_rows_of(loaded, raw_rows, ...)
    splits = split_rows(rows, validation=0.1, test=0.1, seed=42, stratify=True)
    splits.train, splits.validation, splits.test                   # row numbers

Rules, each a tested invariant:
- the same rows and seed give the same splits; every kept row lands in exactly one split;
- stratified: in each split, each label's count is within one row of its share;
- grouped: all rows of a group land in the same split;
- `dedup`: rows whose content repeats an earlier row are dropped before splitting;
- augmented rows (those with a `parent`) never go to validation or test: they follow
  their parent into train, and are dropped when the parent is held out, since a
  paraphrase of a test row in train is leakage too. A parent missing from the file
  counts as train.

Written here rather than with scikit-learn's splitters: they do not combine a seed-stable
hold-out with the augmented-row rule, and scikit-learn would be a new dependency for
~100 lines.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SplitRow:
    line: int
    content: str  # a hash of the row's content: equal rows are duplicates, parents are found by it
    label: str | None = None
    group: str | None = None
    parent: str | None = None  # the parent's content hash, for augmented rows


@dataclass
class Splits:
    train: list[int] = field(default_factory=list)
    validation: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)
    dropped_duplicates: list[int] = field(default_factory=list)
    dropped_augmented: list[int] = field(default_factory=list)  # their parent was held out

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def split_rows(
    rows: list[SplitRow],
    validation: float = 0.1,
    test: float = 0.0,
    seed: int = 42,
    stratify: bool = False,
    group: bool = False,
    dedup: bool = False,
) -> Splits:
    """Split `rows` into train/validation/test (see the module docstring for the rules)."""
    if validation < 0 or test < 0 or validation + test >= 1:
        raise ValueError(f"validation ({validation}) and test ({test}) shares must be >= 0 and sum below 1")
    if stratify and group:
        raise ValueError("choose stratify or group, not both")
    splits = Splits()
    originals: list[SplitRow] = []
    augmented: list[SplitRow] = []
    seen: set[str] = set()
    for row in rows:
        if dedup and row.content in seen:
            splits.dropped_duplicates.append(row.line)
            continue
        seen.add(row.content)
        (augmented if row.parent is not None else originals).append(row)
    rng = random.Random(seed)
    if group:
        parts = _grouped(originals, validation, test, rng)
    elif stratify:
        parts = _stratified(originals, validation, test, rng)
    else:
        parts = _cut(originals, validation, test, rng)
    splits.train, splits.validation, splits.test = (sorted(r.line for r in part) for part in parts)
    held_out = {r.content for r in parts[1] + parts[2]}
    for row in augmented:
        (splits.dropped_augmented if row.parent in held_out else splits.train).append(row.line)
    splits.train.sort()
    return splits


Parts = tuple[list[SplitRow], list[SplitRow], list[SplitRow]]


def _counts(n: int, validation: float, test: float) -> tuple[int, int]:
    """Rows held out for validation and test; rounded per split, leaving train at least one row."""
    n_val, n_test = round(validation * n), round(test * n)
    while n_val + n_test >= n and n_val + n_test > 0:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def _cut(rows: list[SplitRow], validation: float, test: float, rng: random.Random) -> Parts:
    shuffled = list(rows)
    rng.shuffle(shuffled)
    n_val, n_test = _counts(len(shuffled), validation, test)
    return shuffled[n_val + n_test :], shuffled[:n_val], shuffled[n_val : n_val + n_test]


def _stratified(rows: list[SplitRow], validation: float, test: float, rng: random.Random) -> Parts:
    by_label: dict[str, list[SplitRow]] = defaultdict(list)
    for row in rows:
        by_label[str(row.label)].append(row)
    train: list[SplitRow] = []
    valid: list[SplitRow] = []
    held: list[SplitRow] = []
    for label in sorted(by_label):
        part = _cut(by_label[label], validation, test, rng)
        train += part[0]
        valid += part[1]
        held += part[2]
    return train, valid, held


def _grouped(rows: list[SplitRow], validation: float, test: float, rng: random.Random) -> Parts:
    """Whole groups go to test, then validation, until each reaches its share of the rows."""
    by_group: dict[str, list[SplitRow]] = defaultdict(list)
    for row in rows:
        by_group[row.group if row.group is not None else f"\0{row.line}"].append(row)
    keys = sorted(by_group)
    rng.shuffle(keys)
    target_test, target_val = test * len(rows), validation * len(rows)
    train: list[SplitRow] = []
    valid: list[SplitRow] = []
    held: list[SplitRow] = []
    for index, key in enumerate(keys):
        members = by_group[key]
        last_group = index == len(keys) - 1 and not train
        if len(held) + len(members) / 2 <= target_test and not last_group:
            held += members
        elif len(valid) + len(members) / 2 <= target_val and not last_group:
            valid += members
        else:
            train += members
    return train, valid, held


def rows_to_split(
    path: str, format: str = "auto", label_field: str | None = None, group_field: str | None = None
) -> tuple[list[SplitRow], dict[int, dict]]:
    """The `SplitRow`s of a file and its raw records by row number; rows with errors are left out."""
    from tunery.data.fields import AUGMENTATION_FIELD, row_hash
    from tunery.data.formats import load_examples
    from tunery.data.load import read_rows

    loaded = load_examples(path, format=format)
    records = dict(read_rows(path))
    rows = []
    for example in loaded.examples:
        record = records[example.line]
        origin = record.get(AUGMENTATION_FIELD) or {}
        label = (
            example.label
            if label_field == "label" and example.label
            else _field(record, label_field, path, example.line)
        )
        rows.append(
            SplitRow(
                line=example.line,
                content=row_hash(example),
                label=label,
                group=_field(record, group_field, path, example.line),
                parent=origin.get("parent") if isinstance(origin, dict) else None,
            )
        )
    return rows, records


def write_splits(splits: Splits, records: dict[int, dict], out_dir: str) -> dict[str, str]:
    """One JSONL file per non-empty split, rows in their original order; returns split -> path."""
    from pathlib import Path

    from tunery.data.fields import write_jsonl

    written = {}
    for name, lines in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if lines:
            path = write_jsonl([records[line] for line in lines], Path(out_dir) / f"{name}.jsonl")
            written[name] = str(path)
    return written


def _field(record: dict, name: str | None, path: str, line: int) -> str | None:
    from tunery.data.load import error_at

    if name is None:
        return None
    if name not in record:
        raise error_at(path, line, f"has no field '{name}' to split by")
    value = record[name]
    return None if value is None else str(value)
