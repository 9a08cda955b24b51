"""Tell which of the five source formats a file is in, and turn each row into an `Example`.

    data = load_examples("data/train.jsonl")          # format="auto"
    data.format, len(data.examples), data.errors       # "chat", 998, [RowError(line=7, ...), ...]

The formats and the fields they need (a field that is null counts as missing):

| format         | fields                                              | becomes               |
|----------------|-----------------------------------------------------|-----------------------|
| chat           | `messages`: [{role, content}, ...]                  | kind "chat"           |
|                | or ShareGPT `conversations`: [{from, value}, ...]   | (human/gpt → user/assistant) |
| instruction    | `instruction`, `output` (or `response`, `answer`),  | kind "chat": [system] + user + assistant |
|                | optional `input` (or `context`), optional `system`  |                       |
| completion     | `prompt`, `completion`                              | kind "completion"     |
| classification | `text`, `label` (a string or an integer)            | kind "classification" |
| text           | `text`                                              | kind "text"           |

Detection (`detect_format`) guesses a format for every row from its field names and
raises on the first row that disagrees with the rows before it. A row with none of the
known fields has no vote; it becomes a row error later. `text` rows and `text` + `label`
rows do not count as mixed: the file is classification, and a row without a label is a
row error, because a missing label is far likelier than a plain-text row in a labelled file.

Decisions about chat rows:
- roles are system, user and assistant; a system message may only come first;
- a conversation needs at least one assistant turn (otherwise nothing is learned);
- turns after the last assistant turn carry no loss, so they are dropped with a warning
  rather than failing the row; every chat `Example` therefore ends with an assistant turn.

An empty `input` in an instruction row is the Alpaca way of saying "no input" and is not
warned about; an empty `system` is, since someone meant to write one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunery.data.load import Row, error_at, json_type, read_rows
from tunery.data.types import FORMATS, DataError, DataFileError, Example, LoadedData, Message, RowError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}
# Fields of preference rows (data/preference.py); SFT loading points such a file to task: preference.
PREFERENCE_KEYS = ("chosen", "rejected", "preferred_output", "non_preferred_output")
OUTPUT_KEYS = ("output", "response", "answer")
INPUT_KEYS = ("input", "context")
FORMAT_HINT = (
    "expected messages (chat), instruction + output (instruction), prompt + completion (completion), "
    "text + label (classification) or text (text); or set data.format"
)


class _RowProblem(Exception):
    """Raised inside the converters; `to_example` turns it into a `RowError`."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def load_examples(path: str | Path, format: str = "auto", split: str | None = None) -> LoadedData:
    """Read, detect and convert a data file; bad rows are collected in `.errors`, not raised."""
    if format != "auto" and format not in FORMATS:
        raise DataFileError(
            str(path), f"unknown format '{format}'", hint=f"use one of: auto, {', '.join(FORMATS)}"
        )
    rows = read_rows(path, split=split)
    first = rows[0][1]
    kto_row = "completion" in first and isinstance(first.get("label"), bool)
    if kto_row or any(key in first for key in PREFERENCE_KEYS):
        raise DataFileError(str(path), "holds preference rows (chosen/rejected or a true/false label), not SFT rows",
                            hint="train them with task: preference (docs/preference.md)")  # fmt: skip
    fmt = detect_format(rows, path=path) if format == "auto" else format
    examples: list[Example] = []
    errors: list[RowError] = []
    warnings: list[RowError] = []
    for line, record in rows:
        result = to_example(line, record, fmt, warnings=warnings)
        if isinstance(result, RowError):
            errors.append(result)
        else:
            examples.append(result)
    return LoadedData(
        path=str(path),
        format=fmt,
        examples=examples,
        errors=errors,
        warnings=warnings,
        content_hash=content_hash(path),
        n_rows=len(rows),
    )


SHOWN_ERRORS = 10  # row errors listed in a refusal


def load_checked(path: str | Path, fmt: str = "auto") -> LoadedData:
    """`load_examples`, refusing a file with any row error: `DataError` lists them (up to a few)."""
    loaded = load_examples(path, format=fmt)
    if loaded.errors:
        shown = "\n  ".join(str(error) for error in loaded.errors[:SHOWN_ERRORS])
        more = len(loaded.errors) - SHOWN_ERRORS
        tail = f"\n  … and {more} more" if more > 0 else ""
        raise DataError(
            f"{path}: {len(loaded.errors)} row(s) cannot be used:\n  {shown}{tail}\n"
            f"Fix them (see `tunery data check {path}`) and run again."
        )
    return loaded


def detect_format(rows: list[Row], path: str | Path = "<rows>") -> str:
    """The one format all rows share; raises `DataFileError` on mixed formats or when no row is recognisable."""
    detected: str | None = None
    for line, record in rows:
        guess = _guess_format(record)
        if guess is None or guess == detected:
            continue
        if detected is None or {guess, detected} == {"text", "classification"}:
            detected = "classification" if detected else guess
            continue
        reason = f"looks like '{guess}' but earlier rows are '{detected}'"
        raise error_at(path, line, reason, hint="use one format per file or set data.format")
    if detected is None:
        fields = sorted({key for _, record in rows for key in record})[:10]
        raise DataFileError(
            str(path), f"cannot tell the format from the fields: {', '.join(fields)}", hint=FORMAT_HINT
        )
    return detected


def _guess_format(record: dict[str, Any]) -> str | None:
    keys = {key for key, value in record.items() if value is not None}
    if keys & {"messages", "conversations"}:
        return "chat"
    if "instruction" in keys:
        return "instruction"
    if keys & {"prompt", "completion"}:
        return "completion"
    if "text" in keys:
        return "classification" if "label" in keys else "text"
    return None


def to_example(
    line: int, record: dict[str, Any], fmt: str, warnings: list[RowError] | None = None
) -> Example | RowError:
    """Convert one row of format `fmt`; returns a `RowError` if the row is unusable.

    Problems that do not stop the row from training are appended to `warnings`.
    """
    if fmt not in _CONVERTERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    row_warnings: list[tuple[str | None, str]] = []
    try:
        example = _CONVERTERS[fmt](line, record, row_warnings)
    except _RowProblem as problem:
        return RowError(line, problem.field, problem.reason)
    if warnings is not None:
        warnings.extend(RowError(line, field, reason) for field, reason in row_warnings)
    return example


def _string(record: dict[str, Any], key: str, *, required: bool = True, name: str | None = None) -> str:
    """`record[key]` checked to be a string; non-empty when required. `name` is the field name used in errors."""
    name = name or key
    value = record.get(key)
    if value is None:
        if required:
            raise _RowProblem(
                name, "required field is missing" if key not in record else "required field is null"
            )
        return ""
    if not isinstance(value, str):
        raise _RowProblem(name, f"must be a string, got {json_type(value)}")
    if required and not value:
        raise _RowProblem(name, "required field is empty")
    return value


def _first_key(record: dict[str, Any], keys: Iterable[str]) -> str | None:
    return next((key for key in keys if record.get(key) is not None), None)


def _chat(line: int, record: dict[str, Any], warnings: list) -> Example:
    key = "messages" if "messages" in record or "conversations" not in record else "conversations"
    turns = record.get(key)
    if turns is None:
        raise _RowProblem(key, "required field is missing" if key not in record else "required field is null")
    if not isinstance(turns, list):
        raise _RowProblem(key, f"must be a list of messages, got {json_type(turns)}")
    if not turns:
        raise _RowProblem(key, "required field is empty")
    messages = [
        _message(turn, f"{key}[{index}]", sharegpt=key == "conversations") for index, turn in enumerate(turns)
    ]
    for index, message in enumerate(messages[1:], start=1):
        if message.role == "system":
            raise _RowProblem(f"{key}[{index}].role", "a system message may only come first")
    last_answer = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    if last_answer is None:
        raise _RowProblem(key, "has no assistant turn, so there is nothing to learn")
    if last_answer < len(messages) - 1:
        dropped = len(messages) - 1 - last_answer
        warnings.append(
            (key, f"ends with a '{messages[-1].role}' turn; {dropped} turn(s) after the last answer dropped")
        )
    return Example(line=line, kind="chat", messages=tuple(messages[: last_answer + 1]))


def _message(turn: Any, where: str, sharegpt: bool) -> Message:
    if not isinstance(turn, dict):
        raise _RowProblem(where, f"must be an object with a role and a content, got {json_type(turn)}")
    role_key, content_key = ("from", "value") if sharegpt and "from" in turn else ("role", "content")
    role = _string(turn, role_key, name=f"{where}.{role_key}")
    known = SHAREGPT_ROLES if sharegpt else {role: role for role in ROLES}
    if role not in known:
        raise _RowProblem(
            f"{where}.{role_key}", f"unknown role '{role}'; expected one of: {', '.join(known)}"
        )
    return Message(role=known[role], content=_string(turn, content_key, name=f"{where}.{content_key}"))


def _instruction(line: int, record: dict[str, Any], warnings: list) -> Example:
    instruction = _string(record, "instruction")
    output = _string(record, _first_key(record, OUTPUT_KEYS) or "output")
    extra = _string(record, _first_key(record, INPUT_KEYS) or "input", required=False)
    system = _string(record, "system", required=False)
    if "system" in record and not system:
        warnings.append(("system", "optional field is empty; no system message is used"))
    user = f"{instruction}\n\n{extra}" if extra else instruction
    messages = [Message("system", system)] if system else []
    messages += [Message("user", user), Message("assistant", output)]
    return Example(line=line, kind="chat", messages=tuple(messages))


def _completion(line: int, record: dict[str, Any], warnings: list) -> Example:
    prompt, completion = _string(record, "prompt"), _string(record, "completion")
    return Example(line=line, kind="completion", prompt=prompt, completion=completion)


def _text(line: int, record: dict[str, Any], warnings: list) -> Example:
    return Example(line=line, kind="text", text=_string(record, "text"))


def _classification(line: int, record: dict[str, Any], warnings: list) -> Example:
    text, label = _string(record, "text"), record.get("label")
    if label is None:
        raise _RowProblem(
            "label", "required field is missing" if "label" not in record else "required field is null"
        )
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise _RowProblem("label", f"must be a string or an integer, got {json_type(label)}")
    if label == "":
        raise _RowProblem("label", "required field is empty")
    return Example(line=line, kind="classification", text=text, label=str(label))


_CONVERTERS = {
    "chat": _chat,
    "instruction": _instruction,
    "completion": _completion,
    "text": _text,
    "classification": _classification,
}


def content_hash(path: str | Path) -> str:
    """sha256 hex of a file's bytes; for a directory, of its files' relative names and hashes, sorted by name."""
    path = Path(path)
    if path.is_file():
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with file.open("rb") as handle:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()
