"""The quality and bias report: flaws a whole data set has that no single row shows.

    train = load_examples("data/train.jsonl")
    report = quality_report(train, against=[load_examples("data/valid.jsonl")])
    [(f.code, f.severity, f.count, f.lines[:5]) for f in report.findings]

Each finding has a severity (high, medium, low), a count, the row numbers and one
line on what it will do to training. The checks:

| code               | what                                                    | severity |
|--------------------|---------------------------------------------------------|----------|
| leakage            | train rows (near-)duplicated in a validation/test file  | high     |
| conflicting        | the same prompt with different answers                  | high     |
| secrets            | API keys, tokens, private keys                          | high     |
| empty-answers      | empty or placeholder answers ("n/a", "TODO", "...")     | high     |
| label-imbalance    | largest class >= 3x the smallest (10x: high)            | medium   |
| length-by-label    | one class's mean length >= 2x another's                 | medium   |
| emails, phones     | personal data                                           | medium   |
| copied-answers     | answers that repeat the prompt                          | medium   |
| language-mix       | more than one language with >= 2% of the rows           | medium   |
| duplicates         | exact and near duplicates within the set                | low      |

Labels come from a classification file or, for other formats, from a field of each
row that the caller names (`labels=`). Leakage reuses the near-duplicate machinery of
`check.py` over the union of the files; copied answers use the same shingle similarity
(`similarity.py`). The report is a plain object: the CLI renders it
(`tunery.cli.render_data`), `to_dict()` serves --json.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tunery.data.check import find_exact_duplicates, find_near_duplicates
from tunery.data.fields import answer_text, last_user_text, normalise, prompt_text
from tunery.data.language import guess_language
from tunery.data.load import row_unit, short_list
from tunery.data.pii import find_personal_data
from tunery.data.similarity import jaccard
from tunery.data.types import Example, LoadedData

SEVERITIES = ("high", "medium", "low")
PLACEHOLDERS = frozenset(
    {"", "n/a", "na", "none", "null", "nil", "todo", "tbd", "tba", "...", "…", "-", "--", "?", "xxx"}
    | {"placeholder", "lorem ipsum", "answer", "answer here", "your answer here", "insert answer", "fixme"}
)
IMBALANCE_MEDIUM, IMBALANCE_HIGH = 3.0, 10.0
LENGTH_RATIO = 2.0
MIN_LANGUAGE_SHARE = 0.02
COPY_SIMILARITY = 0.9


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # "high" | "medium" | "low"
    title: str
    count: int
    lines: list[int]
    effect: str  # one line: what it will do to training
    detail: str = ""  # a suggestion or the numbers behind the finding


@dataclass
class QualityReport:
    path: str
    format: str
    rows: int
    unit: str
    findings: list[Finding] = field(default_factory=list)
    label_counts: dict[str, int] | None = None
    length_by_label: dict[str, dict[str, float]] | None = None  # label -> rows, mean/p50/max words
    languages: dict[str, int] = field(default_factory=dict)
    augmented: dict[str, int] = field(default_factory=dict)  # strategy -> rows
    checked: list[str] = field(default_factory=list)  # the checks that ran
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why it did not run

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quality_report(
    data: LoadedData,
    against: list[LoadedData] | None = None,
    labels: dict[int, str] | None = None,
    origins: dict[int, str] | None = None,
) -> QualityReport:
    """The report for `data`; `against` are validation/test files checked for leakage.

    `labels` maps row numbers to a label (classification files need none); `origins`
    maps augmented rows to their strategy.
    """
    examples = data.examples
    if labels is None and data.format == "classification":
        labels = {e.line: e.label for e in examples if e.label is not None}
    findings: list[Finding] = []
    for holdout in against or []:
        findings += leakage(examples, holdout)
    findings += conflicting_answers(examples)
    findings += personal_data(examples)
    findings += empty_answers(examples)
    languages = Counter(guess_language(_all_text(e)) for e in examples)
    findings += language_mix(languages, len(examples))
    length_by_label = None
    if labels:
        findings += label_imbalance(labels)
        length_by_label = lengths_by_label(examples, labels)
        findings += length_bias(length_by_label)
    findings += copied_answers(examples)
    findings += duplicates(examples)
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    checked = [f"leakage against {h.path}" for h in against or []]
    checked += ["conflicting answers", "personal data", "empty answers", "language mix"]
    checked += ["label imbalance", "length by label"] if labels else []
    checked += ["copied answers", "duplicates"]
    skipped = {} if against else {"leakage": "no validation/test file given (--against)"}
    if not labels:
        skipped["label imbalance, length by label"] = (
            "no labels (classification files have them; else --label-field)"
        )
    return QualityReport(
        path=data.path,
        format=data.format,
        rows=len(examples),
        unit=row_unit(data.path),
        findings=findings,
        label_counts=dict(Counter(labels.values()).most_common()) if labels else None,
        length_by_label=length_by_label,
        languages=dict(languages.most_common()),
        augmented=dict(Counter((origins or {}).values()).most_common()),
        checked=checked,
        skipped=skipped,
    )


# --- the checks -------------------------------------------------------------------------------
def leakage(train: list[Example], holdout: LoadedData) -> list[Finding]:
    """Train rows that are exact or near duplicates of rows in `holdout`."""
    combined = [dataclasses.replace(e, line=i) for i, e in enumerate(train + holdout.examples)]
    n_train = len(train)
    groups = find_exact_duplicates(combined) + find_near_duplicates(combined)
    train_lines: set[int] = set()
    holdout_lines: set[int] = set()
    for group in groups:
        inside = [i for i in group if i < n_train]
        outside = [i for i in group if i >= n_train]
        if inside and outside:
            train_lines.update(train[i].line for i in inside)
            holdout_lines.update(holdout.examples[i - n_train].line for i in outside)
    if not holdout_lines:
        return []
    return [
        Finding(
            "leakage",
            "high",
            f"rows shared with {holdout.path}",
            len(holdout_lines),
            sorted(train_lines),
            "the model is evaluated on rows it trained on, so evaluation scores are inflated",
            f"{holdout.path} rows: {short_list(sorted(holdout_lines))}",
        )
    ]


def conflicting_answers(examples: list[Example]) -> list[Finding]:
    by_prompt: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        if e.kind != "text":
            by_prompt[normalise(prompt_text(e))].append(e)
    lines = []
    for group in by_prompt.values():
        if len({normalise(answer_text(e)) for e in group}) > 1:
            lines += [e.line for e in group]
    if not lines:
        return []
    return [
        Finding(
            "conflicting",
            "high",
            "same prompt, different answers",
            len(lines),
            sorted(lines),
            "the model is taught two answers to one question and learns to hedge between them",
        )
    ]


def personal_data(examples: list[Example]) -> list[Finding]:
    found: dict[str, list[int]] = defaultdict(list)
    for e in examples:
        for kind in find_personal_data(_all_text(e)):
            found[kind].append(e.line)
    findings = []
    if found["secret"]:
        findings.append(
            Finding(
                "secrets",
                "high",
                "API keys, tokens or private keys",
                len(found["secret"]),
                found["secret"],
                "the model can memorise and repeat them to anyone; remove and rotate them",
            )
        )
    for kind, code in (("email", "emails"), ("phone", "phones")):
        if found[kind]:
            findings.append(
                Finding(
                    code,
                    "medium",
                    f"{'email addresses' if kind == 'email' else 'phone numbers'}",
                    len(found[kind]),
                    found[kind],
                    "personal data can be memorised and reproduced; mask or remove it unless it is synthetic",
                )
            )
    return findings


def empty_answers(examples: list[Example]) -> list[Finding]:
    lines = [e.line for e in examples if e.kind in ("chat", "completion") and _is_placeholder(e)]
    if not lines:
        return []
    return [
        Finding(
            "empty-answers",
            "high",
            "empty or placeholder answers",
            len(lines),
            lines,
            "the model learns to answer with nothing or with the placeholder",
        )
    ]


def _is_placeholder(example: Example) -> bool:
    answers = [m.content for m in example.messages if m.role == "assistant"] or [example.completion]
    return any(normalise(a).strip(" .!") in PLACEHOLDERS or not a.strip() for a in answers)


def language_mix(languages: Counter, total: int) -> list[Finding]:
    known = {lang: n for lang, n in languages.items() if lang != "unknown"}
    present = {lang: n for lang, n in known.items() if n / max(total, 1) >= MIN_LANGUAGE_SHARE}
    if len(present) < 2:
        return []
    shares = ", ".join(f"{lang} {n / total:.0%}" for lang, n in sorted(present.items(), key=lambda x: -x[1]))
    minority = min(present.values())
    return [
        Finding(
            "language-mix",
            "medium",
            "more than one language",
            minority,
            [],
            "the model may answer in the wrong language; languages with few rows are learned poorly",
            shares,
        )
    ]


def label_imbalance(labels: dict[int, str]) -> list[Finding]:
    counts = Counter(labels.values())
    if len(counts) < 2:
        return []
    (majority, most), (minority, least) = counts.most_common()[0], counts.most_common()[-1]
    ratio = most / least
    if ratio < IMBALANCE_MEDIUM:
        return []
    total, k = sum(counts.values()), len(counts)
    weights = ", ".join(f"{label}: {total / (k * n):.2f}" for label, n in sorted(counts.items()))
    return [
        Finding(
            "label-imbalance",
            "high" if ratio >= IMBALANCE_HIGH else "medium",
            f"'{majority}' has {ratio:.1f}x the rows of '{minority}'",
            least,
            sorted(line for line, label in labels.items() if label == minority),
            f"the model leans towards '{majority}' and under-learns '{minority}'; accuracy will overstate it",
            f"class weights {{{weights}}}, or oversample '{minority}' to {most} rows "
            f"(or undersample '{majority}' to {least})",
        )
    ]


def lengths_by_label(examples: list[Example], labels: dict[int, str]) -> dict[str, dict[str, float]]:
    words: dict[str, list[int]] = defaultdict(list)
    for e in examples:
        if e.line in labels:
            words[labels[e.line]].append(len(_all_text(e).split()))
    return {
        label: {
            "rows": len(values),
            "mean": round(statistics.fmean(values), 1),
            "p50": statistics.median_low(values),
            "max": max(values),
        }
        for label, values in sorted(words.items())
    }


def length_bias(length_by_label: dict[str, dict[str, float]]) -> list[Finding]:
    means = {label: stats["mean"] for label, stats in length_by_label.items() if stats["rows"] >= 5}
    if len(means) < 2 or min(means.values()) == 0:
        return []
    longest, shortest = max(means, key=means.__getitem__), min(means, key=means.__getitem__)
    ratio = means[longest] / means[shortest]
    if ratio < LENGTH_RATIO:
        return []
    return [
        Finding(
            "length-by-label",
            "medium",
            f"'{longest}' rows are {ratio:.1f}x as long as '{shortest}' rows",
            len(means),
            [],
            "length alone predicts the label, so the model can learn the shortcut instead of the task",
            f"mean words: {', '.join(f'{label} {mean}' for label, mean in means.items())}",
        )
    ]


def copied_answers(examples: list[Example]) -> list[Finding]:
    lines = [
        e.line
        for e in examples
        if e.kind in ("chat", "completion") and _copies(last_user_text(e), answer_text(e))
    ]
    if not lines:
        return []
    return [
        Finding(
            "copied-answers",
            "medium",
            "answers that repeat the prompt",
            len(lines),
            lines,
            "the model learns to echo its input instead of answering",
        )
    ]


def _copies(prompt: str, answer: str) -> bool:
    prompt, answer = normalise(prompt), normalise(answer)
    if not answer or not prompt:
        return False
    if answer == prompt or (answer in prompt and len(answer) >= COPY_SIMILARITY * len(prompt)):
        return True
    return jaccard(prompt, answer) >= COPY_SIMILARITY


def duplicates(examples: list[Example]) -> list[Finding]:
    findings = []
    for code, groups in (
        ("exact-duplicates", find_exact_duplicates(examples)),
        ("near-duplicates", find_near_duplicates(examples)),
    ):
        if groups:
            extra = sorted(line for group in groups for line in group[1:])
            findings.append(
                Finding(
                    code,
                    "low",
                    f"{code.replace('-', ' ')}: {len(groups)} groups",
                    len(extra),
                    extra,
                    "repeated rows weigh more in the loss and push the model to memorise them",
                )
            )
    return findings


def _all_text(example: Example) -> str:
    if example.kind == "chat":
        return "\n".join(m.content for m in example.messages)
    if example.kind == "completion":
        return f"{example.prompt}\n{example.completion}"
    return example.text
