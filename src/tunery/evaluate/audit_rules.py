"""Which audited rows to flag, and why: robust outlier cuts per split, near-duplicate disagreements.

    cuts = flag_split(rows, AuditRules())        # sets row.flags / row.reasons, returns the cuts used
    flag_disagreements(rows, examples)           # label_noise where near-duplicate prompts agree otherwise
    flag_exact_duplicates(rows, examples)        # memorised: the second and later copies of a row

The cuts are robust (median and MAD, not mean and standard deviation) because the rows being
looked for are the outliers that would drag a mean: `cut = median + k * max(1.4826 * MAD, floor)`.
1.4826 * MAD estimates the standard deviation of normal data, and k = 3.5 is Iglewicz and Hoaglin's
cut for a modified z-score. The floor keeps a well-learned split (every loss near 0, MAD near 0)
from flagging rows for a few hundredths of a nat. Each split (train, validation) gets its own cuts:
held-out rows have higher losses by nature and would otherwise all look unlearned.

- `not_learned`: tuned loss above the cut of its split's tuned losses.
- `label_noise`: the tuned model confidently contradicts the label (the mean over supervised tokens
  of p(model's top token) - p(label token) is at least `contradiction_min` and above its split's
  cut), or the answer differs from the one most near-duplicate prompts share (shingle Jaccard of
  the prompts >= `near_duplicate`, the data check's threshold; at least two such neighbours, two
  thirds of them agreeing on another answer).
- `memorised`: the loss fell far more than for the rest (drop above its split's cut and at least
  twice the median drop) and ended at or below the median tuned loss; or the row repeats an
  earlier one exactly (`data.fields.row_hash`).

A split of fewer than `min_rows` rows gets no statistical flags: a median of five says little.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tunery.data.fields import answer_text, normalise, prompt_text, row_hash
from tunery.data.similarity import SHINGLE, candidate_pairs, connected_groups, jaccard, minhash
from tunery.data.types import Example

MAD_TO_SIGMA = 1.4826
LARGEST_GROUP = 2000  # near-duplicate groups compared pair by pair; a larger one (one template) is skipped


@dataclass(frozen=True)
class AuditRules:
    """The thresholds of the flags (module docstring); the defaults are the documented ones."""

    k: float = 3.5
    loss_floor: float = 0.05  # nats per token
    contradiction_min: float = 0.2
    contradiction_floor: float = 0.02
    drop_floor: float = 0.05
    near_duplicate: float = 0.85
    min_rows: int = 8


@dataclass
class RowAudit:
    """One audited row: where it is, its losses under both models, and its flags."""

    split: str  # train, validation, or data (a file given with --data)
    source: str  # the file the row was read from
    line: int  # 1-based, as `tunery data check` numbers rows
    tokens: int  # supervised tokens
    tuned_loss: float
    base_loss: float
    loss_drop: float  # base - tuned
    label_prob: float  # tuned model: mean probability of the label's tokens
    top_prob: float  # tuned model: mean probability of its own top token
    agreement: float  # tuned model: share of tokens where its top token is the label
    contradiction: float  # tuned model: mean p(top) - p(label)
    prompt: str
    answer: str
    predicted: str = ""  # the tuned model's top token at each answer position, decoded
    loss_z: float = 0.0  # robust z-score of tuned_loss in its split
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def flag(self, name: str, reason: str) -> None:
        if name not in self.flags:
            self.flags.append(name)
        self.reasons.append(reason)


def median_and_scale(values: Sequence[float], floor: float) -> tuple[float, float]:
    """(median, max(1.4826 * MAD, floor)) of the values."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median, max(MAD_TO_SIGMA * mad, floor)


def flag_split(rows: Sequence[RowAudit], rules: AuditRules) -> dict[str, float]:
    """Flag one split's rows by its own robust cuts; returns the cuts (empty for a too-small split)."""
    if len(rows) < rules.min_rows:
        return {}
    loss_median, loss_scale = median_and_scale([r.tuned_loss for r in rows], rules.loss_floor)
    contra_median, contra_scale = median_and_scale([r.contradiction for r in rows], rules.contradiction_floor)
    drop_median, drop_scale = median_and_scale([r.loss_drop for r in rows], rules.drop_floor)
    cuts = {
        "not_learned_loss_above": loss_median + rules.k * loss_scale,
        "label_noise_contradiction_above": max(
            rules.contradiction_min, contra_median + rules.k * contra_scale
        ),
        "memorised_drop_above": max(drop_median + rules.k * drop_scale, 2 * drop_median),
        "median_tuned_loss": loss_median,
    }
    for row in rows:
        row.loss_z = (row.tuned_loss - loss_median) / loss_scale
        if row.tuned_loss > cuts["not_learned_loss_above"]:
            cut = cuts["not_learned_loss_above"]
            row.flag("not_learned", f"tuned loss {row.tuned_loss:.3f} is above its split's cut {cut:.3f}")
        if row.contradiction > cuts["label_noise_contradiction_above"]:
            cut = cuts["label_noise_contradiction_above"]
            reason = f"p(its own token) - p(label) averages {row.contradiction:.2f} (cut {cut:.2f})"
            row.flag("label_noise", f"the tuned model confidently contradicts the label: {reason}")
        if row.loss_drop > cuts["memorised_drop_above"] and row.tuned_loss <= loss_median:
            cut = cuts["memorised_drop_above"]
            reason = f"far more than the split's median {drop_median:.3f} (cut {cut:.3f})"
            row.flag("memorised", f"loss fell by {row.loss_drop:.3f}, {reason}")
    return {name: round(value, 6) for name, value in cuts.items()}


def flag_exact_duplicates(rows: Sequence[RowAudit], examples: Sequence[Example]) -> int:
    """Flag `memorised` on every repeat of an earlier row of the same file; returns how many."""
    first: dict[tuple[str, str], int] = {}
    repeats = 0
    for row, example in zip(rows, examples, strict=True):
        key = (row.source, row_hash(example))
        if key in first:
            row.flag("memorised", f"the same row as line {first[key]}: trained on twice")
            repeats += 1
        else:
            first[key] = row.line
    return repeats


def flag_disagreements(rows: Sequence[RowAudit], examples: Sequence[Example], threshold: float) -> int:
    """Flag `label_noise` where most near-duplicate prompts share another answer; returns how many."""
    prompts = [normalise(prompt_text(example)) for example in examples]
    answers = [normalise(answer_text(example)) for example in examples]
    usable = [i for i, prompt in enumerate(prompts) if len(prompt) >= SHINGLE and answers[i]]
    if len(usable) < 3:
        return 0
    signatures = minhash([prompts[i] for i in usable])
    pairs = [(usable[i], usable[j]) for i, j in candidate_pairs(signatures)]
    flagged = 0
    for group in connected_groups(pairs):
        if len(group) > LARGEST_GROUP:
            continue
        for i in group:
            neighbours = [j for j in group if j != i and jaccard(prompts[i], prompts[j]) >= threshold]
            verdict = _disagreement(answers[i], [answers[j] for j in neighbours])
            if verdict is not None:
                lines = ", ".join(_where(rows[j], rows[i].split) for j in neighbours[:5])
                rows[i].flag("label_noise", f"near-duplicate prompts ({lines}) mostly answer {verdict!r}")
                flagged += 1
    return flagged


def _disagreement(answer: str, others: list[str]) -> str | None:
    """The answer most neighbours share when it is not this row's: two or more, two thirds of them."""
    if len(others) < 2:
        return None
    common, count = Counter(others).most_common(1)[0]
    if common != answer and count >= 2 and count * 3 >= len(others) * 2:
        return common[:80]
    return None


def _where(row: RowAudit, split: str) -> str:
    return f"line {row.line}" if row.split == split else f"{row.split} line {row.line}"
