"""The data-check report of a preference file: what would go wrong before DPO/KTO time is spent.

    report = check_preferences(load_preferences("pairs.jsonl"), tokenizer, max_length=512)
    report.ok, report.to_dict()

Beyond the row errors of loading it lists rows that appear twice, the token lengths of
prompts, chosen and rejected answers, rows where truncation would leave a side with no
answer token (errors: the row cannot train), and the length bias: when chosen answers are
mostly longer (or shorter) than rejected ones, DPO learns "longer wins" instead of the
preference, a known failure mode; the report warns at 75% either way.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tunery.data.check import LengthStats
from tunery.data.fields import normalise
from tunery.data.load import row_unit
from tunery.data.preference import LoadedPreferences, PreferenceExample
from tunery.data.types import RowError

LENGTH_BIAS_WARNING = 0.75  # share of pairs whose chosen answer is the longer one


@dataclass
class PreferenceReport:
    path: str
    format: str  # paired | unpaired
    content_hash: str
    rows: int
    valid_rows: int
    unit: str
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    exact_duplicates: list[list[int]] = field(default_factory=list)
    prompt_tokens: LengthStats | None = None  # token lengths need a tokenizer; else None
    chosen_tokens: LengthStats | None = None  # for unpaired rows: the completions
    rejected_tokens: LengthStats | None = None
    chosen_longer_share: float | None = None  # pairs whose chosen answer is longer than the rejected one
    mean_length_difference: float | None = None  # mean of len(chosen) - len(rejected), tokens or characters
    length_unit: str = "characters"
    desirable_rows: int | None = None  # unpaired only
    max_length: int | None = None
    truncated: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def check_preferences(
    loaded: LoadedPreferences, tokenizer=None, max_length: int | None = None
) -> PreferenceReport:
    """The report; token lengths and truncation need `tokenizer` (and `max_length`)."""
    examples = loaded.examples
    report = PreferenceReport(
        loaded.path, loaded.format, loaded.content_hash, loaded.n_rows, len(examples), row_unit(loaded.path),
        errors=list(loaded.errors), exact_duplicates=find_duplicate_rows(examples),
    )  # fmt: skip
    if loaded.format == "unpaired":
        report.desirable_rows = sum(bool(e.desirable) for e in examples)
    lengths = _char_lengths(examples)
    if tokenizer is not None and examples:
        lengths = _add_token_lengths(report, examples, tokenizer, max_length or 10**9)
        report.max_length = max_length
    _add_length_bias(report, lengths)
    report.errors.sort(key=lambda e: e.line)
    return report


def find_duplicate_rows(examples: list[PreferenceExample]) -> list[list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for e in examples:
        prompt = (
            e.prompt
            if isinstance(e.prompt, str)
            else "\x1f".join(f"{m.role}\x1e{m.content}" for m in e.prompt)
        )
        key = "\x1d".join(normalise(part) for part in (prompt, e.chosen, e.rejected or "", str(e.desirable)))
        groups[key].append(e.line)
    return sorted((lines for lines in groups.values() if len(lines) > 1), key=lambda lines: lines[0])


def _char_lengths(examples: list[PreferenceExample]) -> list[tuple[int, int]]:
    return [(len(e.chosen), len(e.rejected)) for e in examples if e.rejected is not None]


def _add_token_lengths(
    report: PreferenceReport, examples, tokenizer, max_length: int
) -> list[tuple[int, int]]:
    """Prompt/chosen/rejected token counts; a side truncation leaves with no answer token is a row error."""
    from tunery.data.preference_tokens import encode_sides

    prompts, chosen, rejected = [], [], []
    for example in examples:
        sides, truncated = encode_sides(example, tokenizer, max_length)
        answers = [side.n_supervised_before_truncation for side in sides]
        prompts.append(sides[0].n_tokens_before_truncation - answers[0])
        chosen.append(answers[0])
        rejected.extend(answers[1:])
        if truncated:
            report.truncated.append(example.line)
        for name, side in zip(("chosen", "rejected"), sides, strict=False):
            if side.n_supervised == 0:
                reason = f"keeps no answer token after truncation to max_length ({max_length}); raise data.max_length"
                report.errors.append(
                    RowError(example.line, name if example.rejected else "completion", reason)
                )
    report.prompt_tokens, report.chosen_tokens = LengthStats.of(prompts), LengthStats.of(chosen)
    report.rejected_tokens = LengthStats.of(rejected) if rejected else None
    report.length_unit = "tokens"
    return list(zip(chosen, rejected, strict=False)) if rejected else []


def _add_length_bias(report: PreferenceReport, lengths: list[tuple[int, int]]) -> None:
    if not lengths:
        return
    share = sum(c > r for c, r in lengths) / len(lengths)
    report.chosen_longer_share = round(share, 4)
    report.mean_length_difference = round(sum(c - r for c, r in lengths) / len(lengths), 2)
    shorter = sum(c < r for c, r in lengths) / len(lengths)
    if share >= LENGTH_BIAS_WARNING or shorter >= LENGTH_BIAS_WARNING:
        side, value = ("longer", share) if share >= LENGTH_BIAS_WARNING else ("shorter", shorter)
        reason = (f"the chosen answer is the {side} one in {value:.0%} of pairs: the model may learn length, "
                  "not the preference; balance the lengths or try preference.loss=simpo (length-normalised)")  # fmt: skip
        report.warnings.append(RowError(0, None, reason))
