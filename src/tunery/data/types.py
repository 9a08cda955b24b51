"""The shapes data takes between loading, checking and tokenising.

Every source format (instruction, OpenAI chat, prompt/completion, plain text,
labelled text) becomes one `Example` kind, so the tokeniser and the checks
only know four shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tunery.errors import TuneryError

ExampleKind = Literal["chat", "completion", "text", "classification"]
FORMATS = ("chat", "instruction", "completion", "text", "classification")


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Example:
    """One training row, normalised. `line` is 1-based: the JSONL line or CSV/Parquet row."""

    line: int
    kind: ExampleKind
    messages: tuple[Message, ...] = ()
    prompt: str = ""
    completion: str = ""
    text: str = ""
    label: str | None = None


@dataclass(frozen=True)
class RowError:
    """A problem with one row; the row is left out of training."""

    line: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.reason}"


class DataFileError(TuneryError, ValueError):
    """The file as a whole cannot be read: names the file, and the line when there is one."""

    code = "invalid_training_file"

    def __init__(self, path: str, reason: str, line: int | None = None, hint: str | None = None):
        self.path, self.reason, self.line, self.hint = path, reason, line, hint
        where = f"{path}:{line}" if line is not None else path
        message = f"{where}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class DataError(TuneryError, ValueError):
    """The data has rows that cannot be trained on; the message lists them."""

    code = "invalid_training_file"


@dataclass
class LoadedData:
    path: str
    format: str  # one of FORMATS
    examples: list[Example]
    errors: list[RowError] = field(default_factory=list)
    content_hash: str = ""  # sha256 of the file bytes (or of the datasets directory's files)
    n_rows: int = 0
    warnings: list[RowError] = field(default_factory=list)  # rows that are kept but worth a look


@dataclass(frozen=True)
class TokenCount:
    """Token counts for one example under the chosen tokenizer and template.

    total: tokens before truncation; supervised: tokens that carry loss before
    truncation; supervised_kept: supervised tokens left after truncating to max_length.
    """

    total: int
    supervised: int
    supervised_kept: int
