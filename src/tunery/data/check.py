"""The data-check report: what is wrong with a data set before any GPU time is spent on it.

    data = load_examples("data/train.jsonl")
    report = check_data(data, count_tokens=tokenizer_counter, max_length=2048)
    report.ok, report.to_dict()          # False when rows have errors; a dict for --json and the API

The report holds the row errors and warnings from loading, plus what only the whole set
shows: exact duplicates, near duplicates, token lengths, rows over `max_length` and the
label distribution of a classification set. It is a plain object: the CLI renders it
(`tunery.cli.render_data`), the API and the dashboard read `to_dict()`.

Duplicates are compared on text normalised by collapsing whitespace and casefolding.
Exact duplicates compare the whole example (system messages and roles included); for
classification only the text, and a group whose labels differ also gets a warning.

Near duplicates are pairs whose 5-character shingle sets have a Jaccard similarity of at
least 0.85, found with MinHash and LSH banding and then checked exactly (`similarity.py`).
The text compared leaves out system messages, since a shared system prompt would make every
row look alike. Groups are the connected components of the similar pairs. Texts shorter than
5 characters are left out.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunery.data.fields import normalise
from tunery.data.load import numbered_rows, row_unit
from tunery.data.similarity import SHINGLE, candidate_pairs, connected_groups, jaccard, minhash
from tunery.data.types import Example, LoadedData, RowError, TokenCount

NEAR_DUPLICATE_THRESHOLD = 0.85


@dataclass(frozen=True)
class LengthStats:
    """Token lengths over the valid rows; percentiles are nearest-rank, so they are real row lengths."""

    min: int
    mean: float
    p50: int
    p95: int
    max: int
    sum: int

    @classmethod
    def of(cls, values: list[int]) -> LengthStats:
        ordered = sorted(values)

        def rank(share: float) -> int:
            return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]

        return cls(ordered[0], sum(ordered) / len(ordered), rank(0.5), rank(0.95), ordered[-1], sum(ordered))


@dataclass
class DataReport:
    path: str
    format: str
    content_hash: str
    rows: int
    valid_rows: int
    unit: str  # what row numbers count: "line" (.jsonl, .csv), "record" (.json) or "row"
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    exact_duplicates: list[list[int]] = field(default_factory=list)  # groups of row numbers
    near_duplicates: list[list[int]] = field(default_factory=list)
    total_tokens: LengthStats | None = None  # only when a token counter was given
    supervised_tokens: LengthStats | None = None
    max_length: int | None = None
    truncated: list[int] = field(default_factory=list)  # over max_length, cut, still trained on
    dropped: list[int] = field(default_factory=list)  # no supervised token left: left out of training
    label_counts: dict[str, int] | None = None  # classification only, most frequent first

    @property
    def ok(self) -> bool:
        return not self.errors

    def length_summary(self) -> str | None:
        """The sentence about over-long rows, or None when lengths were not checked."""
        if self.max_length is None or self.total_tokens is None:
            return None
        return (
            f"{len(self.truncated)} rows will be truncated to max_length ({self.max_length}); "
            f"{len(self.dropped)} rows would keep no supervised token after truncation and will be dropped"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok, "length_summary": self.length_summary()}


def check_data(
    data: LoadedData,
    count_tokens: Callable[[Example], TokenCount] | None = None,
    max_length: int | None = None,
) -> DataReport:
    """Build the report for loaded data; token lengths need `count_tokens`, over-length rows also `max_length`."""
    unit = row_unit(data.path)
    exact = find_exact_duplicates(data.examples)
    warnings = (
        data.warnings
        + _blank_answer_warnings(data.examples)
        + _label_conflicts(data.examples, exact, unit)
        + _oversized_row_warnings(data.examples)
        + _duplicate_only_warning(data.examples, exact)
    )
    report = DataReport(
        path=data.path,
        format=data.format,
        content_hash=data.content_hash,
        rows=data.n_rows,
        valid_rows=len(data.examples),
        unit=unit,
        errors=sorted(data.errors, key=lambda e: e.line),
        warnings=sorted(warnings, key=lambda w: w.line),
        exact_duplicates=exact,
        near_duplicates=find_near_duplicates(data.examples),
        label_counts=_label_counts(data.examples) if data.format == "classification" else None,
    )
    if count_tokens is not None and data.examples:
        _add_token_lengths(report, data.examples, count_tokens, max_length)
    return report


def _add_token_lengths(
    report: DataReport,
    examples: list[Example],
    count_tokens: Callable[[Example], TokenCount],
    max_length: int | None,
) -> None:
    counts = [count_tokens(example) for example in examples]
    report.total_tokens = LengthStats.of([c.total for c in counts])
    report.supervised_tokens = LengthStats.of([c.supervised for c in counts])
    if max_length is None:
        return
    report.max_length = max_length
    for example, count in zip(examples, counts, strict=True):
        # Classification trains a head, not next-token loss, so it never runs out of supervised tokens.
        if count.supervised_kept == 0 and example.kind != "classification":
            report.dropped.append(example.line)
        elif count.total > max_length:
            report.truncated.append(example.line)


def _exact_key(example: Example) -> str:
    if example.kind == "chat":
        return "\x1f".join(f"{m.role}\x1e{normalise(m.content)}" for m in example.messages)
    if example.kind == "completion":
        return f"{normalise(example.prompt)}\x1f{normalise(example.completion)}"
    return normalise(example.text)


def _compared_text(example: Example) -> str:
    """The text near-duplicate detection compares: everything but system messages, normalised."""
    if example.kind == "chat":
        return normalise("\n".join(m.content for m in example.messages if m.role != "system"))
    if example.kind == "completion":
        return normalise(f"{example.prompt}\n{example.completion}")
    return normalise(example.text)


def find_exact_duplicates(examples: list[Example]) -> list[list[int]]:
    """Groups of row numbers with the same normalised content, ordered by their first row."""
    groups: dict[str, list[int]] = defaultdict(list)
    for example in examples:
        groups[_exact_key(example)].append(example.line)
    return sorted((lines for lines in groups.values() if len(lines) > 1), key=lambda lines: lines[0])


def find_near_duplicates(
    examples: list[Example], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> list[list[int]]:
    """Groups of rows whose texts are alike (shingle Jaccard >= threshold) but not exact duplicates."""
    import numpy as np

    kept = [(e, text) for e in examples if len(text := _compared_text(e)) >= SHINGLE]
    texts = [text for _, text in kept]
    if len(texts) < 2:
        return []
    signatures = minhash(texts)
    pairs = []
    for i, j in candidate_pairs(signatures):
        if _exact_key(kept[i][0]) == _exact_key(kept[j][0]):
            continue
        if np.mean(signatures[i] == signatures[j]) < threshold - 0.25:  # cheap estimate first
            continue
        if jaccard(texts[i], texts[j]) >= threshold:
            pairs.append((kept[i][0].line, kept[j][0].line))
    return connected_groups(pairs)


def _blank_answer_warnings(examples: list[Example]) -> list[RowError]:
    warnings = []
    for e in examples:
        if e.kind == "chat" and any(m.role == "assistant" and not m.content.strip() for m in e.messages):
            warnings.append(RowError(e.line, None, "an assistant answer is only whitespace"))
        elif e.kind == "completion" and not e.completion.strip():
            warnings.append(RowError(e.line, "completion", "is only whitespace"))
        elif e.kind in ("text", "classification") and not e.text.strip():
            warnings.append(RowError(e.line, "text", "is only whitespace"))
    return warnings


# About 250,000 tokens: far over any max_length, so such a row is almost surely a broken export.
OVERSIZED_ROW_CHARS = 1_000_000


def _oversized_row_warnings(examples: list[Example]) -> list[RowError]:
    warnings = []
    for e in examples:
        chars = sum(len(m.content) for m in e.messages) + len(e.prompt) + len(e.completion) + len(e.text)
        if chars > OVERSIZED_ROW_CHARS:
            reason = f"{chars:,} characters of text, far over any max_length; it will be truncated (is it a broken export?)"
            warnings.append(RowError(e.line, None, reason))
    return warnings


def _duplicate_only_warning(examples: list[Example], exact: list[list[int]]) -> list[RowError]:
    """One warning when every row repeats another: training would only memorise a few examples."""
    repeated = sum(len(group) for group in exact)
    if not examples or repeated < len(examples):
        return []
    reason = f"every row repeats another: {len(examples)} rows hold only {len(exact)} distinct examples"
    return [RowError(examples[0].line, None, reason)]


def _label_conflicts(examples: list[Example], exact: list[list[int]], unit: str) -> list[RowError]:
    labels = {e.line: e.label for e in examples if e.kind == "classification" and e.label is not None}
    warnings = []
    for group in exact:
        found = sorted({labels[line] for line in group if line in labels})
        if len(found) > 1:
            reason = f"same text as {numbered_rows(unit, group[1:])} but different labels: {', '.join(found)}"
            warnings.append(RowError(group[0], "label", reason))
    return warnings


def _label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(Counter(e.label for e in examples if e.label is not None).most_common())
