"""Read a data file into raw rows, each with the 1-based number a person would look for.

    rows = read_rows("data/train.jsonl")        # [(1, {"messages": [...]}), (2, {...}), ...]
    rows = read_rows("data/hf_dir", split="test")

What the number means depends on the file (see `row_unit`):

- `.jsonl`: the line in the file. Blank lines are skipped but still counted.
- `.json`: a list of objects (or `{"data": [...]}`); the number is the record's index + 1,
  and messages say "record N" because a record can span many lines.
- `.csv`: the file line where the row starts, so the first data row is line 2. We use the
  `csv` module rather than pandas because only it tells us where a row with quoted
  newlines starts.
- `.parquet` and a `datasets` directory (saved with `save_to_disk`): the row, from 1.

Everything that stops the file from being read as a whole raises `DataFileError`: a
missing file, an unknown extension, an empty file, bytes that are not UTF-8, a line that is
not JSON or not a JSON object, a CSV row with the wrong number of fields. These are fatal
on purpose: they usually mean the file was written in another format (pretty-printed JSON
saved as .jsonl, a truncated write, unquoted commas), and every row after them would be
misread, so a list of thousands of row errors would only hide the one real cause.
Problems with the *content* of a well-formed row (a missing field, an unknown role) are
not raised here; `formats.to_example` turns them into `RowError`s and loading goes on.

pandas, pyarrow and datasets are imported inside the readers that need them, so that
importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from tunery.data.types import DataFileError

SUPPORTED = "use .jsonl, .json, .csv, .parquet or a datasets directory saved with save_to_disk"
JSONL_HINT = "each line must be one JSON object"
JSON_HINT = 'the file must be a JSON list of objects, or {"data": [...]}'
UTF8_HINT = "save the file as UTF-8"

Row = tuple[int, dict[str, Any]]


def read_rows(path: str | Path, split: str | None = None) -> list[Row]:
    """Read `path` into `(number, record)` pairs; `split` picks a split of a DatasetDict (default "train").

    `split` is ignored for plain files and for a directory holding a single Dataset.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(str(path), "no such file or directory")
    if path.is_dir():
        rows = _read_datasets_dir(path, split)
    else:
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise DataFileError(
                str(path), f"unsupported file type '{path.suffix or '(none)'}'", hint=SUPPORTED
            )
        rows = reader(path)
    if not rows:
        raise DataFileError(str(path), "file has no rows")
    return rows


def row_unit(path: str | Path) -> str:
    """What a row number counts in this file: "line" (.jsonl, .csv), "record" (.json) or "row"."""
    suffix = Path(path).suffix.lower()
    return {".jsonl": "line", ".csv": "line", ".json": "record"}.get(suffix, "row")


SHOWN_NUMBERS = 20  # row numbers listed before "(+N more)"


def short_list(items: list, shown: int = SHOWN_NUMBERS) -> str:
    """The first `shown` items, comma separated, then how many more: long lists of rows stay readable."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(map(str, items[:shown])) + more


def numbered_rows(unit: str, numbers: list[int]) -> str:
    """Row numbers named by what they count: `lines 2, 5, 9`, `record 4`."""
    return f"{unit}{'s' if len(numbers) > 1 else ''} {short_list(numbers)}"


def error_at(path: str | Path, number: int, reason: str, hint: str | None = None) -> DataFileError:
    """A `DataFileError` about one row: `path:7: reason` for line-based files, `path: record 7: reason` otherwise."""
    unit = row_unit(path)
    if unit == "line":
        return DataFileError(str(path), reason, line=number, hint=hint)
    return DataFileError(str(path), f"{unit} {number}: {reason}", hint=hint)


def json_type(value: Any) -> str:
    """The JSON name of a value's type with its article, for messages: "a string", "an object", "null"."""
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list"}
    names[dict] = "an object"
    return "null" if value is None else names.get(type(value), f"a {type(value).__name__}")


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading BOM is dropped); names the line of the first bad byte."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if not data.strip():
        raise DataFileError(str(path), "file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        column = len(data[line_start : err.start].decode("utf-8")) + 1
        reason = f"not UTF-8: byte 0x{data[err.start]:02x} at column {column} cannot be decoded"
        raise DataFileError(str(path), reason, line=line, hint=UTF8_HINT) from None


def _read_jsonl(path: Path) -> list[Row]:
    text = _read_text(path)
    rows = []
    # split("\n"), not splitlines(): U+2028 and friends may sit unescaped inside JSON strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            hint = JSONL_HINT
            if text.lstrip().startswith("["):
                hint = "the file looks like one JSON list: name it .json, or write one object per line"
            raise DataFileError(str(path), _json_reason(err), line=number, hint=hint) from None
        if not isinstance(record, dict):
            raise error_at(path, number, f"expected a JSON object, got {json_type(record)}", JSONL_HINT)
        rows.append((number, record))
    return rows


def _json_reason(err: json.JSONDecodeError) -> str:
    # "Unterminated string starting at" already ends in "at"
    return f"invalid JSON: {err.msg.removesuffix(' at')} at column {err.colno}"


def _read_json(path: Path) -> list[Row]:
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise DataFileError(str(path), _json_reason(err), line=err.lineno, hint=JSON_HINT) from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if not isinstance(document, list):
        raise DataFileError(
            str(path), f"expected a list of records, got {json_type(document)}", hint=JSON_HINT
        )
    for index, record in enumerate(document):
        if not isinstance(record, dict):
            raise error_at(path, index + 1, f"expected a JSON object, got {json_type(record)}", JSON_HINT)
    return [(index + 1, record) for index, record in enumerate(document)]


def _read_csv(path: Path) -> list[Row]:
    # Training texts are long; the csv module's default cap is 128 KiB per field.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
        rows, row_start = [], reader.line_num + 1
        for cells in reader:
            number, row_start = row_start, reader.line_num + 1
            if not cells:  # a blank line
                continue
            if len(cells) != len(header):
                reason = f"row has {len(cells)} fields but the header has {len(header)}"
                hint = "quote fields that contain commas"
                if "\n" in cells[-1]:  # a quote left open swallows the lines after it
                    reason += f": a quote opened here is still open at line {reader.line_num}"
                    hint = 'close the quote, or write a quote inside a field as ""'
                raise DataFileError(str(path), reason, line=number, hint=hint)
            rows.append((number, dict(zip(header, cells, strict=True))))
    except csv.Error as err:
        raise DataFileError(str(path), f"invalid CSV: {err}", line=reader.line_num) from None
    return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as err:
        raise DataFileError(str(path), f"cannot read Parquet: {err}") from None
    return [(index + 1, record) for index, record in enumerate(table.to_pylist())]


def _read_datasets_dir(path: Path, split: str | None) -> list[Row]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataFileError(
            str(path), "directory is not a dataset saved with save_to_disk", hint=SUPPORTED
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        split = split or "train"
        if split not in loaded:
            raise DataFileError(str(path), f"no split '{split}' (splits: {', '.join(sorted(loaded))})")
        loaded = loaded[split]
    return [(index + 1, record) for index, record in enumerate(loaded.to_list())]


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
