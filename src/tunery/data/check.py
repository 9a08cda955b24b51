"""The data-check report: what is wrong with a data set before any GPU time is spent on it.

    data = load_examples("data/train.jsonl")
    report = check_data(data, count_tokens=tokenizer_counter, max_length=2048)
    Console().print(render_report(report))
    report.ok, report.to_dict()          # False when rows have errors; a dict for --json

The report holds the row errors and warnings from loading, plus what only the whole set
shows: exact duplicates, near duplicates, token lengths, rows over `max_length` and the
label distribution of a classification set.

Duplicates are compared on text normalised by collapsing whitespace and casefolding.
Exact duplicates compare the whole example (system messages and roles included); for
classification only the text, and a group whose labels differ also gets a warning.

Near duplicates are written here rather than taken from a library (datasketch and friends
would be a new dependency for ~60 lines of numpy): pairs whose 5-character shingle sets have
a Jaccard similarity of at least 0.85, found with MinHash (48 hashes) and LSH banding
(12 bands of 4), which puts a pair at 0.85 in a shared bucket with probability > 0.9998, and
then checked exactly. The text compared leaves out system messages, since a shared system
prompt would make every row look alike. Within a bucket each row is compared only with the
bucket's first row, which keeps the work linear on sets full of one template; groups are the
connected components of the similar pairs. Texts shorter than 5 characters are left out.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunery.data.load import row_unit
from tunery.data.types import Example, LoadedData, RowError, TokenCount

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console, RenderableType

NEAR_DUPLICATE_THRESHOLD = 0.85
SHINGLE = 5
BANDS, BAND_ROWS = 12, 4
SHOW = 20  # items listed per section in the rendered report


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


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _exact_key(example: Example) -> str:
    if example.kind == "chat":
        return "\x1f".join(f"{m.role}\x1e{_normalise(m.content)}" for m in example.messages)
    if example.kind == "completion":
        return f"{_normalise(example.prompt)}\x1f{_normalise(example.completion)}"
    return _normalise(example.text)


def _compared_text(example: Example) -> str:
    """The text near-duplicate detection compares: everything but system messages, normalised."""
    if example.kind == "chat":
        return _normalise("\n".join(m.content for m in example.messages if m.role != "system"))
    if example.kind == "completion":
        return _normalise(f"{example.prompt}\n{example.completion}")
    return _normalise(example.text)


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
    signatures = _minhash(texts)
    pairs = []
    for i, j in _candidate_pairs(signatures):
        if _exact_key(kept[i][0]) == _exact_key(kept[j][0]):
            continue
        if np.mean(signatures[i] == signatures[j]) < threshold - 0.25:  # cheap estimate first
            continue
        if _jaccard(texts[i], texts[j]) >= threshold:
            pairs.append((kept[i][0].line, kept[j][0].line))
    return _connected_groups(pairs)


def _shingle_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every SHINGLE-character window of each text, back to back, and where each text's start."""
    import numpy as np

    joined = "".join(texts).encode("utf-32-le", errors="surrogatepass")
    codes = np.frombuffer(joined, dtype=np.uint32).astype(np.uint64)
    n = len(codes) - SHINGLE + 1
    hashes = np.zeros(n, dtype=np.uint64)
    for offset in range(SHINGLE):  # polynomial hash of each window, wrapping mod 2**64
        hashes = hashes * np.uint64(1_000_003) + codes[offset : offset + n]
    lengths = np.array([len(t) for t in texts])
    ends = np.cumsum(lengths)[:-1]
    crossing = (ends[:, None] - np.arange(1, SHINGLE)[None, :]).ravel()  # windows spanning two texts
    keep = np.ones(n, dtype=bool)
    keep[crossing] = False
    counts = lengths - SHINGLE + 1
    return _mix(hashes[keep]), np.concatenate([[0], np.cumsum(counts)[:-1]])


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the polynomial hash over all 64 bits."""
    import numpy as np

    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _minhash(texts: list[str], chunk_chars: int = 1 << 22) -> np.ndarray:
    """(len(texts), BANDS * BAND_ROWS) MinHash signatures, with hashes h -> a*h + b mod 2**64."""
    import numpy as np

    rng = np.random.default_rng(0)  # fixed, so reports are reproducible
    n_hashes = BANDS * BAND_ROWS
    a = rng.integers(1, 2**63, n_hashes, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, n_hashes, dtype=np.uint64)
    signatures = np.empty((len(texts), n_hashes), dtype=np.uint64)
    start = 0
    while start < len(texts):  # chunks of about chunk_chars characters bound the memory used
        stop, size = start, 0
        while stop < len(texts) and (size == 0 or size + len(texts[stop]) <= chunk_chars):
            size, stop = size + len(texts[stop]), stop + 1
        hashes, offsets = _shingle_hashes(texts[start:stop])
        for k in range(n_hashes):
            signatures[start:stop, k] = np.minimum.reduceat(hashes * a[k] + b[k], offsets)
        start = stop
    return signatures


def _candidate_pairs(signatures: np.ndarray) -> set[tuple[int, int]]:
    """Index pairs sharing a band; each row is paired with the first row of its bucket."""
    import numpy as np

    pairs: set[tuple[int, int]] = set()
    weights = np.arange(1, 2 * BAND_ROWS, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for band in range(BANDS):
        keys = signatures[:, band * BAND_ROWS : (band + 1) * BAND_ROWS] @ weights
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        first = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
        for i, j in zip(first[~starts].tolist(), order[~starts].tolist(), strict=True):
            pairs.add((min(i, j), max(i, j)))
    return pairs


def _jaccard(left: str, right: str) -> float:
    import numpy as np

    a, b = (np.unique(_shingle_hashes([text])[0]) for text in (left, right))
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def _connected_groups(pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for line in parent:
        groups[root(line)].append(line)
    return sorted((sorted(lines) for lines in groups.values()), key=lambda lines: lines[0])


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
    labels = {e.line: e.label for e in examples if e.kind == "classification"}
    warnings = []
    for group in exact:
        found = sorted({labels[line] for line in group if line in labels})
        if len(found) > 1:
            reason = f"same text as {_numbers(unit, group[1:])} but different labels: {', '.join(found)}"
            warnings.append(RowError(group[0], "label", reason))
    return warnings


def _label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(Counter(e.label for e in examples if e.label is not None).most_common())


def render_report(report: DataReport, console: Console | None = None) -> RenderableType:
    """The report as a rich renderable; printed too when a `console` is given."""
    from rich.console import Group

    parts = [_summary_table(report)]
    parts += _problem_list("errors", report.errors, report.unit, "red")
    parts += _problem_list("warnings", report.warnings, report.unit, "yellow")
    parts += _duplicate_list("exact duplicates", report.exact_duplicates, report.unit)
    parts += _duplicate_list("near duplicates", report.near_duplicates, report.unit)
    parts += _token_section(report)
    parts += _label_section(report)
    parts.append(_verdict(report))
    renderable = Group(*parts)
    if console is not None:
        console.print(renderable)
    return renderable


def _numbers(unit: str, numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:SHOW]))
    more = f" (+{len(numbers) - SHOW} more)" if len(numbers) > SHOW else ""
    return f"{unit}{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _summary_table(report: DataReport) -> Any:
    from rich.table import Table

    table = Table(title=f"Data check: {report.path}", show_header=False, title_justify="left")
    table.add_row("format", report.format)
    table.add_row("rows", str(report.rows))
    table.add_row("valid rows", str(report.valid_rows))
    table.add_row("rows with errors", str(len({e.line for e in report.errors})))
    table.add_row("warnings", str(len(report.warnings)))
    table.add_row("content sha256", report.content_hash[:16])
    return table


def _problem_list(title: str, problems: list[RowError], unit: str, style: str) -> list[Any]:
    from rich.text import Text

    if not problems:
        return []
    lines = [Text(f"{title} ({len(problems)}):", style=f"bold {style}")]
    for p in problems[:SHOW]:
        where = f"{unit} {p.line}" + (f", field '{p.field}'" if p.field else "")
        lines.append(Text(f"  {where}: {p.reason}"))
    if len(problems) > SHOW:
        lines.append(Text(f"  ... and {len(problems) - SHOW} more"))
    return lines


def _duplicate_list(title: str, groups: list[list[int]], unit: str) -> list[Any]:
    from rich.text import Text

    if not groups:
        return []
    rows = sum(len(g) for g in groups)
    lines = [Text(f"{title}: {len(groups)} groups, {rows} rows", style="bold yellow")]
    lines += [Text(f"  {_numbers(unit, group)}") for group in groups[:SHOW]]
    if len(groups) > SHOW:
        lines.append(Text(f"  ... and {len(groups) - SHOW} more groups"))
    return lines


def _token_section(report: DataReport) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    if report.total_tokens is None or report.supervised_tokens is None:
        return []
    table = Table(title="tokens per row", title_justify="left")
    for column in ("", "min", "mean", "p50", "p95", "max", "sum"):
        table.add_column(column, justify="right")
    for name, s in (("total", report.total_tokens), ("supervised", report.supervised_tokens)):
        table.add_row(name, str(s.min), f"{s.mean:.1f}", str(s.p50), str(s.p95), str(s.max), str(s.sum))
    parts: list[Any] = [table]
    summary = report.length_summary()
    if summary:
        parts.append(Text(summary, style="yellow" if report.truncated or report.dropped else ""))
    if report.truncated:
        parts.append(Text(f"  truncated: {_numbers(report.unit, report.truncated)}"))
    if report.dropped:
        parts.append(Text(f"  dropped: {_numbers(report.unit, report.dropped)}"))
    return parts


def _label_section(report: DataReport) -> list[Any]:
    from rich.table import Table

    if not report.label_counts:
        return []
    total = sum(report.label_counts.values())
    table = Table(title="labels", title_justify="left")
    table.add_column("label")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    for label, count in report.label_counts.items():
        table.add_row(label, str(count), f"{count / total:.1%}")
    return [table]


def _verdict(report: DataReport) -> Any:
    from rich.text import Text

    if report.ok:
        return Text(f"OK: {report.valid_rows} rows ready for training", style="bold green")
    bad = len({e.line for e in report.errors})
    return Text(f"{bad} rows have errors and will be left out of training", style="bold red")
