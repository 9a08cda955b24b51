"""Property-based fuzzing of the data loaders (hypothesis): whatever the bytes or the JSON, loading
either works or raises `DataFileError` naming the file, and checking never raises at all.

The fast suite tries a modest number of examples per property; the `slow` run many more.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunery.data import DataFileError, check_data, load_examples
from tunery.data.load import read_rows

FAST, SLOW = 40, 1000
SUFFIXES = [".jsonl", ".json", ".csv", ".parquet"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["system", "user", "assistant", "bot", "", "USER", None, 3])
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles, "content": st.one_of(st.text(max_size=30), st.none(), st.integers())}
    ),
    max_size=4,
)
field_names = st.sampled_from(["messages", "conversations", "instruction", "output", "input", "prompt",
                               "completion", "text", "label", "system", "other"])  # fmt: skip
records = st.one_of(
    st.dictionaries(field_names, json_values, max_size=4),
    st.fixed_dictionaries({"messages": messages}),
    st.fixed_dictionaries({"text": st.text(max_size=30), "label": json_values}),
)


def load_and_check(path: Path) -> None:
    """The contract under fuzzing: a DataFileError naming the file, or a report; nothing else."""
    try:
        loaded = load_examples(path)
    except DataFileError as err:
        assert str(err).startswith(str(path)) and err.reason
        return
    report = check_data(loaded)
    assert report.rows == loaded.n_rows == len(loaded.examples) + len(loaded.errors)
    for problem in report.errors + report.warnings:
        assert problem.line >= 1 and problem.reason


def in_file(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"data{suffix}"
    path.write_bytes(data)
    return path


def random_bytes(examples: int, folder: Path):
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=300))
    def property_(suffix, data):
        load_and_check(in_file(folder, suffix, data))

    return property_


def random_json_lines(examples: int, folder: Path):
    @settings(max_examples=examples, deadline=None)
    @given(rows=st.lists(st.one_of(records, json_values), max_size=6), blank=st.booleans())
    def property_(rows, blank):
        text = "".join(json.dumps(row) + ("\n\n" if blank else "\n") for row in rows)
        load_and_check(in_file(folder, ".jsonl", text.encode()))
        load_and_check(in_file(folder, ".json", json.dumps(rows).encode()))

    return property_


def csv_round_trip(examples: int, folder: Path):
    cell = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=15)

    @settings(max_examples=examples, deadline=None)
    @given(rows=st.lists(st.tuples(cell, cell), min_size=1, max_size=5))
    def property_(rows):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
        path = in_file(folder, ".csv", buffer.getvalue().encode())
        load_and_check(path)
        # quoted newlines, commas and quotes come back as written
        assert [(record["text"], record["label"]) for _, record in read_rows(path)] == rows

    return property_


@pytest.mark.parametrize("make", [random_bytes, random_json_lines, csv_round_trip])
def test_loaders_never_raise_anything_but_a_data_file_error(make, tmp_path):
    make(FAST, tmp_path)()


@pytest.mark.slow
@pytest.mark.parametrize("make", [random_bytes, random_json_lines, csv_round_trip])
def test_loaders_never_raise_anything_but_a_data_file_error_long_run(make, tmp_path):
    make(SLOW, tmp_path)()
