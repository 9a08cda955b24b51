"""read_rows: every supported file type, the row numbers it reports, and every way a file can be unreadable."""

import json

import pytest

from tunery.data import DataFileError
from tunery.data.load import read_rows


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def raised(path, **kwargs) -> str:
    with pytest.raises(DataFileError) as info:
        read_rows(path, **kwargs)
    return str(info.value)


# -- file types ---------------------------------------------------------------------------


def test_jsonl_rows_carry_their_line_numbers_and_blank_lines_still_count(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a"}\n\n   \n{"text": "b"}\n')
    assert read_rows(path) == [(1, {"text": "a"}), (4, {"text": "b"})]


def test_jsonl_accepts_windows_line_endings_and_a_bom(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\r\n')
    assert read_rows(path) == [(1, {"text": "a"}), (2, {"text": "b"})]


def test_json_list_rows_are_numbered_by_record(tmp_path):
    path = write(tmp_path / "train.json", json.dumps([{"text": "a"}, {"text": "b"}], indent=2))
    assert read_rows(path) == [(1, {"text": "a"}), (2, {"text": "b"})]


def test_json_object_with_a_data_list_is_read_like_a_list(tmp_path):
    path = write(tmp_path / "train.json", json.dumps({"data": [{"text": "a"}], "version": 2}))
    assert read_rows(path) == [(1, {"text": "a"})]


def test_csv_rows_are_numbered_by_the_file_line_they_start_on(tmp_path):
    # The quoted newline makes the first row span lines 2-3, so the second row starts on line 4.
    path = write(tmp_path / "train.csv", 'prompt,completion\n"two\nlines",x\nhi,there\n\nbye,now\n')
    assert read_rows(path) == [
        (2, {"prompt": "two\nlines", "completion": "x"}),
        (4, {"prompt": "hi", "completion": "there"}),
        (6, {"prompt": "bye", "completion": "now"}),
    ]


def test_parquet_rows_are_numbered_from_one_and_keep_nested_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    messages = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"messages": messages, "id": [7]}), path)
    assert read_rows(path) == [(1, {"messages": messages[0], "id": 7})]


def test_datasets_directory_with_a_single_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": "a"}, {"text": "b"}]).save_to_disk(tmp_path / "ds")
    assert read_rows(tmp_path / "ds") == [(1, {"text": "a"}), (2, {"text": "b"})]


def test_datasets_dict_reads_train_unless_another_split_is_named(tmp_path):
    import datasets

    splits = {"train": [{"text": "t"}], "test": [{"text": "e"}]}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(
        tmp_path / "dd"
    )
    assert read_rows(tmp_path / "dd") == [(1, {"text": "t"})]
    assert read_rows(tmp_path / "dd", split="test") == [(1, {"text": "e"})]
    assert (
        raised(tmp_path / "dd", split="valid") == f"{tmp_path / 'dd'}: no split 'valid' (splits: test, train)"
    )


# -- unreadable files ---------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert raised(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file or directory"


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    path = write(tmp_path / "train.txt", "hello\n")
    assert raised(path) == (
        f"{path}: unsupported file type '.txt' "
        "(use .jsonl, .json, .csv, .parquet or a datasets directory saved with save_to_disk)"
    )


def test_directory_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    assert raised(tmp_path / "folder") == (
        f"{tmp_path / 'folder'}: directory is not a dataset saved with save_to_disk "
        "(use .jsonl, .json, .csv, .parquet or a datasets directory saved with save_to_disk)"
    )


@pytest.mark.parametrize(
    "name, text", [("a.jsonl", ""), ("b.jsonl", "\n \n"), ("c.csv", ""), ("d.json", "  ")]
)
def test_empty_file(tmp_path, name, text):
    path = write(tmp_path / name, text)
    assert raised(path) == f"{path}: file is empty"


@pytest.mark.parametrize(
    "name, text", [("a.json", "[]"), ("b.csv", "text,label\n"), ("c.json", '{"data": []}')]
)
def test_file_without_rows(tmp_path, name, text):
    path = write(tmp_path / name, text)
    assert raised(path) == f"{path}: file has no rows"


def test_not_utf8_names_the_line_and_column_of_the_bad_byte(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes('{"text": "ok"}\n{"text": "café"}\n'.encode() + b'{"text": "caf\xe9"}\n')
    assert raised(path) == (
        f"{path}:3: not UTF-8: byte 0xe9 at column 14 cannot be decoded (save the file as UTF-8)"
    )


def test_broken_json_line_names_line_and_column(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a"}\n{"text": "b" "label": 1}\n')
    assert raised(path) == (
        f"{path}:2: invalid JSON: Expecting ',' delimiter at column 14 (each line must be one JSON object)"
    )


def test_pretty_printed_json_saved_as_jsonl_gets_a_hint(tmp_path):
    path = write(tmp_path / "train.jsonl", json.dumps([{"text": "a"}], indent=2))
    assert raised(path) == (
        f"{path}:1: invalid JSON: Expecting value at column 2 "
        "(the file looks like one JSON list: name it .json, or write one object per line)"
    )


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a"}\n["text", "b"]\n')
    assert raised(path) == f"{path}:2: expected a JSON object, got a list (each line must be one JSON object)"


def test_json_record_that_is_not_an_object_is_named_by_record(tmp_path):
    path = write(tmp_path / "train.json", '[{"text": "a"}, "b"]')
    assert raised(path) == (
        f'{path}: record 2: expected a JSON object, got a string (the file must be a JSON list of objects, or {{"data": [...]}})'
    )


def test_broken_json_file_names_the_file_line(tmp_path):
    path = write(tmp_path / "train.json", '[\n  {"text": "a"},\n  {"text": }\n]')
    assert raised(path) == (
        f'{path}:3: invalid JSON: Expecting value at column 12 (the file must be a JSON list of objects, or {{"data": [...]}})'
    )


def test_json_file_that_is_not_a_list(tmp_path):
    path = write(tmp_path / "train.json", '{"text": "a"}')
    assert raised(path) == (
        f'{path}: expected a list of records, got an object (the file must be a JSON list of objects, or {{"data": [...]}})'
    )


def test_csv_row_with_too_many_fields(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nhello, world,pos\n")
    assert (
        raised(path) == f"{path}:2: row has 3 fields but the header has 2 (quote fields that contain commas)"
    )
