"""Dataset versions: register files, count what changed, resolve NAME@VERSION for training."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tests.data.conftest import qa
from tunery.data.diff import diff_examples
from tunery.data.formats import load_examples
from tunery.data.registry import DatasetNotFoundError, resolve_data_path

V1 = [qa("capital of France?", "Paris"), qa("2+2?", "4"), qa("colour of grass?", "green"), qa("hi", "hello")]
# v2: "2+2?" answer edited (changed), "hi" removed, two rows added, the rest reordered.
V2 = [
    qa("colour of grass?", "green"),
    qa("capital of France?", "Paris"),
    qa("2+2?", "four"),
    qa("capital of Spain?", "Madrid"),
    qa("3+3?", "6"),
]


def test_diff_counts_added_removed_and_changed_rows_exactly(tmp_path):
    old = load_examples(write_jsonl(tmp_path / "v1.jsonl", V1)).examples
    new = load_examples(write_jsonl(tmp_path / "v2.jsonl", V2)).examples
    diff = diff_examples(old, new)
    assert diff.counts() == {"added": 2, "removed": 1, "changed": 1, "unchanged": 2}
    assert diff.added_lines == [4, 5]
    assert diff.removed_lines == [4]
    assert diff.changed_lines == [(2, 3)]


def test_reordering_rows_or_their_whitespace_changes_nothing(tmp_path):
    old = load_examples(write_jsonl(tmp_path / "a.jsonl", V1)).examples
    shuffled = [qa("  Capital of FRANCE? ", "Paris"), *V1[1:][::-1]]
    new = load_examples(write_jsonl(tmp_path / "b.jsonl", shuffled)).examples
    assert diff_examples(old, new).counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": 4}


def test_a_duplicated_row_counts_as_added(tmp_path):
    old = load_examples(write_jsonl(tmp_path / "a.jsonl", V1)).examples
    new = load_examples(write_jsonl(tmp_path / "b.jsonl", [*V1, V1[0]])).examples
    assert diff_examples(old, new).counts() == {"added": 1, "removed": 0, "changed": 0, "unchanged": 4}


def test_adding_versions_records_hash_parent_rows_and_changes(store, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", V1)
    first = store.add("orders", file)
    assert first.is_new and first.diff is None
    assert (first.version.version, first.version.parent, first.version.rows) == (1, None, 4)

    write_jsonl(file, V2)
    second = store.add("orders", file)
    assert (second.version.version, second.version.parent, second.version.rows) == (2, 1, 5)
    assert second.version.changes == {"added": 2, "removed": 1, "changed": 1, "unchanged": 2}
    assert second.version.content_hash != first.version.content_hash
    assert [v.version for v in store.versions("orders")] == [1, 2]
    assert store.diff("orders", 1, 2).counts() == second.version.changes


def test_adding_the_same_content_again_makes_no_new_version(store, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", V1)
    store.add("orders", file)
    again = store.add("orders", file)
    assert not again.is_new and again.version.version == 1
    assert len(store.versions("orders")) == 1


def test_a_version_keeps_its_rows_after_the_users_file_changes(store, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", V1)
    version = store.add("orders", file).version
    write_jsonl(file, V2)
    kept = store.load(version)
    assert len(kept.examples) == 4 and kept.content_hash == version.content_hash


def test_files_with_row_errors_are_not_registered(store, tmp_path):
    from tunery.data.prepare import DataError

    file = write_jsonl(tmp_path / "bad.jsonl", [qa("q", "a"), {"messages": []}])
    with pytest.raises(DataError, match="line 2"):
        store.add("bad", file)
    assert store.names() == []


def test_unknown_names_and_versions_say_what_is_registered(store, tmp_path):
    store.add("orders", write_jsonl(tmp_path / "orders.jsonl", V1))
    with pytest.raises(DatasetNotFoundError, match="registered: orders"):
        store.get("shop")
    with pytest.raises(DatasetNotFoundError, match="versions: 1"):
        store.get("orders", 7)


def test_resolve_data_path_turns_names_into_stored_files_and_leaves_paths_alone(store, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", V1)
    store.add("orders", file)
    write_jsonl(file, V2)
    store.add("orders", file)

    path, spec = resolve_data_path("orders@1")
    assert spec == "orders@1" and load_examples(path).n_rows == 4
    assert resolve_data_path("orders")[1] == "orders@2"
    assert resolve_data_path(str(file)) == (str(file), None)
    assert resolve_data_path("not-registered") == ("not-registered", None)
    with pytest.raises(DatasetNotFoundError):
        resolve_data_path("orders@9")
