"""The prompt, the answer and the identity of an `Example`, whatever its kind.

    prompt_text(example)   # what the model is given: every turn before the last answer
    answer_text(example)   # what it learns to produce: the last answer, the completion or the label
    row_hash(example)      # sha256 of the normalised content; the same row in any format hashes the same
    to_record(example)     # back to a JSON row (chat, completion, text or classification)

Versions, the quality report, splits, mixing and augmentation all compare rows
by these, so they live in one place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunery.data.types import Example, Message

# Fields the five source formats read; anything else in a row (an id, a group key) is the user's own.
FORMAT_FIELDS = frozenset(
    {"messages", "conversations", "instruction", "input", "context", "output", "response", "answer"}
    | {"system", "prompt", "completion", "text", "label"}
)
AUGMENTATION_FIELD = "augmentation"


def normalise(text: str) -> str:
    """Whitespace collapsed and case folded: how rows are compared."""
    return " ".join(text.split()).casefold()


def prompt_text(example: Example) -> str:
    """What the model sees before its answer; for a chat, every turn before the last assistant turn."""
    if example.kind == "chat":
        return "\n".join(f"{m.role}: {m.content}" for m in example.messages[:-1])
    if example.kind == "completion":
        return example.prompt
    if example.kind == "classification":
        return example.text
    return ""


def answer_text(example: Example) -> str:
    """What the model learns to produce; empty for plain text, which has no prompt/answer split."""
    if example.kind == "chat":
        return example.messages[-1].content
    if example.kind == "completion":
        return example.completion
    if example.kind == "classification":
        return example.label or ""
    return example.text


def last_user_text(example: Example) -> str:
    """The part augmentation rewrites: the last user turn, the prompt, or the text."""
    if example.kind == "chat":
        return next((m.content for m in reversed(example.messages) if m.role == "user"), "")
    return example.prompt if example.kind == "completion" else example.text


def with_last_user_text(example: Example, text: str) -> Example:
    """A copy of `example` whose rewritable part (see `last_user_text`) is `text`."""
    from dataclasses import replace

    if example.kind == "chat":
        messages = list(example.messages)
        index = max(i for i, m in enumerate(messages) if m.role == "user")
        messages[index] = Message("user", text)
        return replace(example, messages=tuple(messages))
    if example.kind == "completion":
        return replace(example, prompt=text)
    return replace(example, text=text)


def to_record(example: Example) -> dict[str, Any]:
    """The example as a JSON row in its kind's format (instruction rows come back as chat)."""
    if example.kind == "chat":
        return {"messages": [{"role": m.role, "content": m.content} for m in example.messages]}
    if example.kind == "completion":
        return {"prompt": example.prompt, "completion": example.completion}
    if example.kind == "classification":
        return {"text": example.text, "label": example.label}
    return {"text": example.text}


def row_hash(example: Example) -> str:
    """sha256 of the normalised content, line number left out."""
    record = to_record(example)
    canonical = json.dumps(_normalised(record), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _normalised(value: Any) -> Any:
    if isinstance(value, str):
        return normalise(value)
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    return value


def write_jsonl(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Rows as a JSON Lines file (UTF-8, one object a line); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), "utf-8")
    return path


def extra_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The user's own fields of a raw row (ids, group keys, augmentation origin): kept when rows are rewritten."""
    return {k: v for k, v in record.items() if k not in FORMAT_FIELDS}
