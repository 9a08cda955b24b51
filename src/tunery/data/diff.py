"""What changed between two versions of a data set, row by row.

    diff = diff_examples(old.examples, new.examples)
    diff.added, diff.removed, diff.changed, diff.unchanged      # counts of rows

Rows are compared by content (`row_hash`: normalised, line numbers ignored), as a
multiset, so reordering a file changes nothing and a duplicated row counts once more.
A row that left and a row that arrived with the same prompt are one *changed* row
(the answer or label was edited) rather than one removed and one added; rows
without a prompt (plain text) can only be added or removed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tunery.data.fields import normalise, prompt_text, row_hash
from tunery.data.types import Example


@dataclass(frozen=True)
class RowDiff:
    added: int
    removed: int
    changed: int
    unchanged: int
    added_lines: list[int] = field(default_factory=list)  # lines in the new version
    removed_lines: list[int] = field(default_factory=list)  # lines in the old version
    changed_lines: list[tuple[int, int]] = field(default_factory=list)  # (old line, new line)

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.removed} removed, {self.changed} changed, {self.unchanged} unchanged"
        )

    def counts(self) -> dict[str, int]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
        }


def diff_examples(old: list[Example], new: list[Example]) -> RowDiff:
    """Rows added, removed and changed going from `old` to `new` (see the module docstring)."""
    left_over_old = _without_common_rows(old, new)
    left_over_new = _without_common_rows(new, old)
    unchanged = len(new) - len(left_over_new)
    by_prompt: dict[str, list[Example]] = defaultdict(list)
    for example in left_over_old:
        if prompt := _prompt_key(example):
            by_prompt[prompt].append(example)
    added, changed = [], []
    for example in left_over_new:
        candidates = by_prompt.get(_prompt_key(example) or "\0")
        if candidates:
            changed.append((candidates.pop(0).line, example.line))
        else:
            added.append(example.line)
    changed_old = {old_line for old_line, _ in changed}
    removed = [e.line for e in left_over_old if e.line not in changed_old]
    return RowDiff(
        added=len(added),
        removed=len(removed),
        changed=len(changed),
        unchanged=unchanged,
        added_lines=added,
        removed_lines=removed,
        changed_lines=changed,
    )


def _without_common_rows(rows: list[Example], other: list[Example]) -> list[Example]:
    """`rows` minus, for each content, as many copies as `other` holds (multiset difference)."""
    available = Counter(row_hash(e) for e in other)
    left = []
    for example in rows:
        key = row_hash(example)
        if available[key] > 0:
            available[key] -= 1
        else:
            left.append(example)
    return left


def _prompt_key(example: Example) -> str:
    return normalise(prompt_text(example))
