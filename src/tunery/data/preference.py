"""Preference data: paired (chosen over rejected) and unpaired (KTO) rows, read and checked.

    loaded = load_preferences("data/pairs.jsonl")       # format "paired" or "unpaired"
    loaded.examples[0].prompt, loaded.examples[0].chosen, loaded.errors

The shapes a row may take (a field that is null counts as missing):

| shape            | fields                                                                      |
|------------------|-----------------------------------------------------------------------------|
| paired           | `prompt` (string or messages), `chosen`, `rejected` (string or messages)    |
| paired chat      | `messages` (the conversation so far), `chosen`, `rejected`                  |
| OpenAI DPO       | `input.messages`, `preferred_output`, `non_preferred_output` (assistant messages) |
| unpaired (KTO)   | `prompt` (or `messages`), `completion`, `label` (true: desirable, false: not) |

An answer given as messages must be one assistant message; a prompt given as a string
becomes a single user turn when the answers are messages, else a plain-text prompt.
Problems are `RowError`s naming the line and the field, collected rather than raised, so
a check lists them all; the collator never meets a malformed row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunery.data.formats import ROLES, content_hash
from tunery.data.load import json_type, read_rows
from tunery.data.types import DataError, DataFileError, Message, RowError

PreferenceFormat = Literal["paired", "unpaired"]
PAIRED_KEYS = frozenset({"chosen", "rejected", "preferred_output", "non_preferred_output"})
SHOWN_ERRORS = 10


@dataclass(frozen=True)
class PreferenceExample:
    """One row: a prompt and its answers. `rejected` is None and `desirable` set for an unpaired row."""

    line: int
    kind: Literal["chat", "completion"]  # chat: prompt messages + assistant answers; completion: plain text
    prompt: tuple[Message, ...] | str
    chosen: str  # the preferred answer; for an unpaired row, the completion
    rejected: str | None = None
    desirable: bool | None = None


@dataclass
class LoadedPreferences:
    path: str
    format: PreferenceFormat
    examples: list[PreferenceExample]
    errors: list[RowError] = field(default_factory=list)
    content_hash: str = ""
    n_rows: int = 0


class _Problem(Exception):
    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def preference_format(record: dict[str, Any]) -> PreferenceFormat | None:
    """The preference shape a row's field names point to, or None for a row of another kind."""
    keys = {key for key, value in record.items() if value is not None}
    if keys & PAIRED_KEYS:
        return "paired"
    if "completion" in keys and "label" in keys and _as_bool(record["label"]) is not None:
        return "unpaired"
    return None


def is_preference_file(path: str | Path) -> bool:
    """True when the first row that shows a shape is a preference row (used by `tunery data check`)."""
    for _, record in read_rows(path):
        if preference_format(record):
            return True
        if record:
            return False
    return False


def load_preferences(path: str | Path) -> LoadedPreferences:
    """Read a preference file; bad rows are collected in `.errors`, a file of mixed shapes is refused."""
    rows = read_rows(path)
    shapes = {shape for _, record in rows if (shape := preference_format(record))}
    if not shapes:
        raise DataFileError(
            str(path),
            "no preference rows found",
            hint="expected prompt + chosen + rejected, messages + chosen + rejected, "
            "input + preferred_output + non_preferred_output, or prompt + completion + label (true/false)",
        )
    if len(shapes) > 1:
        raise DataFileError(str(path), "mixes paired (chosen/rejected) and unpaired (label) rows",
                            hint="use one shape per file")  # fmt: skip
    fmt: PreferenceFormat = shapes.pop()
    loaded = LoadedPreferences(str(path), fmt, [], content_hash=content_hash(path), n_rows=len(rows))
    for line, record in rows:
        try:
            loaded.examples.append(_paired(line, record) if fmt == "paired" else _unpaired(line, record))
        except _Problem as problem:
            loaded.errors.append(RowError(line, problem.field, problem.reason))
    return loaded


def load_preferences_checked(path: str | Path) -> LoadedPreferences:
    """`load_preferences`, refusing a file with any row error (the message lists the first few)."""
    loaded = load_preferences(path)
    if loaded.errors:
        shown = "\n  ".join(str(error) for error in loaded.errors[:SHOWN_ERRORS])
        more = len(loaded.errors) - SHOWN_ERRORS
        raise DataError(
            f"{path}: {len(loaded.errors)} row(s) cannot be used:\n  {shown}"
            + (f"\n  … and {more} more" if more > 0 else "")
            + f"\nFix them (see `tunery data check {path}`) and run again."
        )
    return loaded


def _paired(line: int, record: dict[str, Any]) -> PreferenceExample:
    if "input" in record or "preferred_output" in record:
        prompt_value, prompt_field = _openai_input(record), "input.messages"
        chosen_key, rejected_key = "preferred_output", "non_preferred_output"
    else:
        prompt_field = "messages" if record.get("messages") is not None else "prompt"
        prompt_value, chosen_key, rejected_key = record.get(prompt_field), "chosen", "rejected"
    chosen_raw, rejected_raw = _required(record, chosen_key), _required(record, rejected_key)
    chat = not isinstance(prompt_value, str) or isinstance(chosen_raw, list) or isinstance(rejected_raw, list)
    prompt = _prompt(prompt_value, prompt_field, chat)
    chosen, rejected = _answer(chosen_raw, chosen_key), _answer(rejected_raw, rejected_key)
    if chosen.strip() == rejected.strip():
        raise _Problem(rejected_key, f"is the same as {chosen_key}: the pair teaches nothing")
    return PreferenceExample(line, "chat" if chat else "completion", prompt, chosen, rejected)


def _unpaired(line: int, record: dict[str, Any]) -> PreferenceExample:
    prompt_field = "messages" if record.get("messages") is not None else "prompt"
    completion_raw = _required(record, "completion")
    desirable = _as_bool(_required(record, "label"))
    if desirable is None:
        raise _Problem("label", f"must be true or false, got {record['label']!r}")
    prompt_value = record.get(prompt_field)
    chat = not isinstance(prompt_value, str) or isinstance(completion_raw, list)
    prompt = _prompt(prompt_value, prompt_field, chat)
    kind: Literal["chat", "completion"] = "chat" if chat else "completion"
    return PreferenceExample(line, kind, prompt, _answer(completion_raw, "completion"), desirable=desirable)


def _openai_input(record: dict[str, Any]) -> Any:
    value = _required(record, "input")
    if not isinstance(value, dict):
        raise _Problem("input", f"must be an object with 'messages', got {json_type(value)}")
    if value.get("messages") is None:
        raise _Problem("input.messages", "required field is missing")
    return value["messages"]


def _required(record: dict[str, Any], key: str) -> Any:
    value = record.get(key)
    if value is None:
        raise _Problem(key, "required field is missing" if key not in record else "required field is null")
    return value


def _prompt(value: Any, where: str, chat: bool) -> tuple[Message, ...] | str:
    """The prompt as messages for a chat row, as text otherwise; never empty."""
    if value is None:
        raise _Problem(where, "required field is missing")
    if isinstance(value, str):
        if not value.strip():
            raise _Problem(where, "is empty: an answer needs a prompt to be preferred for")
        return (Message("user", value),) if chat else value
    if not isinstance(value, list):
        raise _Problem(where, f"must be a string or a list of messages, got {json_type(value)}")
    if not value:
        raise _Problem(where, "is empty: an answer needs a prompt to be preferred for")
    messages = tuple(_message(turn, f"{where}[{i}]") for i, turn in enumerate(value))
    if messages[-1].role == "assistant":
        raise _Problem(f"{where}[{len(messages) - 1}]", "the prompt ends with an assistant turn; "
                       "the answers to compare go in the chosen/rejected fields")  # fmt: skip
    if not any(m.content.strip() for m in messages if m.role != "system"):
        raise _Problem(where, "is empty: an answer needs a prompt to be preferred for")
    return messages


def _answer(value: Any, where: str) -> str:
    """An answer's text: a string, or one assistant message (alone or in a list)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise _Problem(where, f"must hold exactly one assistant message, got {len(value)}")
        value, where = value[0], f"{where}[0]"
    if isinstance(value, dict):
        message = _message(value, where)
        if message.role != "assistant":
            raise _Problem(f"{where}.role", f"must be 'assistant', got '{message.role}'")
        value, where = message.content, f"{where}.content"
    if not isinstance(value, str):
        raise _Problem(where, f"must be a string or an assistant message, got {json_type(value)}")
    if not value.strip():
        raise _Problem(where, "is empty")
    return value


def _message(turn: Any, where: str) -> Message:
    if not isinstance(turn, dict):
        raise _Problem(where, f"must be an object with a role and a content, got {json_type(turn)}")
    role, content = turn.get("role"), turn.get("content")
    if role not in ROLES:
        raise _Problem(f"{where}.role", f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    if not isinstance(content, str):
        raise _Problem(f"{where}.content", f"must be a string, got {json_type(content)}")
    return Message(role, content)


def _as_bool(value: Any) -> bool | None:
    """A KTO label: JSON booleans, or the strings CSV and Parquet exports write for them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None
