"""The data reports on a terminal: `tunery data check` and `tunery data report` as rich tables and lines.

    console = Console()
    render_data_check(check_data(load_examples("data/train.jsonl")), console)
    render_quality_report(quality_report(load_examples("data/train.jsonl")), console)

The data layer builds the reports as plain objects (`tunery.data.check.DataReport`,
`tunery.data.report.QualityReport`); the API and the dashboard read their `to_dict()`,
and only this module knows how they look in a terminal.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from tunery.data.load import SHOWN_NUMBERS, numbered_rows, short_list
from tunery.data.report import SEVERITIES

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from tunery.data.check import DataReport
    from tunery.data.report import Finding, QualityReport
    from tunery.data.types import RowError


def render_data_check(report: DataReport, console: Console | None = None) -> RenderableType:
    """The data-check report as a rich renderable; printed too when a `console` is given."""
    from rich.console import Group

    parts = [_summary_table(report)]
    parts += _problem_list("errors", report.errors, report.unit, "red")
    parts += _problem_list("warnings", report.warnings, report.unit, "yellow")
    parts += _duplicate_list("exact duplicates", report.exact_duplicates, report.unit)
    parts += _duplicate_list("near duplicates", report.near_duplicates, report.unit)
    parts += _token_section(report)
    parts += _label_section(report)
    parts.append(_verdict(report))
    return _shown(Group(*parts), console)


def render_quality_report(report: QualityReport, console: Console | None = None) -> RenderableType:
    """The quality report as a rich renderable; printed too when a `console` is given."""
    from rich.console import Group
    from rich.text import Text

    header = f"Quality report: {report.path} ({report.format}, {report.rows} rows)"
    parts: list[Any] = [Text(header, style="bold")]
    parts.append(Text(f"checked: {', '.join(report.checked)}", style="dim"))
    parts += [Text(f"skipped: {check}: {why}", style="dim") for check, why in report.skipped.items()]
    parts.append(Text(f"languages: {_shares(report.languages, report.rows)}"))
    if report.augmented:
        parts.append(Text(f"augmented rows: {_shares(report.augmented, report.rows)}"))
    parts += _label_length_table(report)
    if not report.findings:
        parts.append(Text("no findings", style="bold green"))
    for finding in report.findings:
        parts += _finding_lines(finding, report.unit)
    summary = Counter(f.severity for f in report.findings)
    parts.append(
        Text(", ".join(f"{summary[s]} {s}" for s in SEVERITIES) + " severity findings", style="bold")
    )
    return _shown(Group(*parts), console)


def _shown(renderable: RenderableType, console: Console | None) -> RenderableType:
    if console is not None:
        console.print(renderable)
    return renderable


# --- the data check ---------------------------------------------------------------------------
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
    for p in problems[:SHOWN_NUMBERS]:
        where = f"{unit} {p.line}" + (f", field '{p.field}'" if p.field else "")
        lines.append(Text(f"  {where}: {p.reason}"))
    if len(problems) > SHOWN_NUMBERS:
        lines.append(Text(f"  ... and {len(problems) - SHOWN_NUMBERS} more"))
    return lines


def _duplicate_list(title: str, groups: list[list[int]], unit: str) -> list[Any]:
    from rich.text import Text

    if not groups:
        return []
    rows = sum(len(g) for g in groups)
    lines = [Text(f"{title}: {len(groups)} groups, {rows} rows", style="bold yellow")]
    lines += [Text(f"  {numbered_rows(unit, group)}") for group in groups[:SHOWN_NUMBERS]]
    if len(groups) > SHOWN_NUMBERS:
        lines.append(Text(f"  ... and {len(groups) - SHOWN_NUMBERS} more groups"))
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
        parts.append(Text(f"  truncated: {numbered_rows(report.unit, report.truncated)}"))
    if report.dropped:
        parts.append(Text(f"  dropped: {numbered_rows(report.unit, report.dropped)}"))
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


# --- the quality report -----------------------------------------------------------------------
def _shares(counts: dict[str, int], total: int) -> str:
    return ", ".join(f"{key} {n} ({n / max(total, 1):.0%})" for key, n in counts.items()) or "-"


def _label_length_table(report: QualityReport) -> list[Any]:
    from rich.table import Table

    if not report.label_counts or not report.length_by_label:
        return []
    table = Table(title="labels (length in words)", title_justify="left")
    for column in ("label", "rows", "share", "mean", "p50", "max"):
        table.add_column(column, justify="left" if column == "label" else "right")
    total = sum(report.label_counts.values())
    for label, count in report.label_counts.items():
        stats = report.length_by_label.get(label, {})
        table.add_row(
            label, str(count), f"{count / total:.1%}",
            *(str(stats.get(key, "")) for key in ("mean", "p50", "max")),
        )  # fmt: skip
    return [table]


def _finding_lines(finding: Finding, unit: str) -> list[Any]:
    from rich.text import Text

    style = {"high": "bold red", "medium": "bold yellow", "low": "bold"}[finding.severity]
    lines = [Text(f"[{finding.severity}] {finding.title} ({finding.count})", style=style)]
    lines.append(Text(f"  effect: {finding.effect}"))
    if finding.detail:
        lines.append(Text(f"  {finding.detail}"))
    if finding.lines:
        lines.append(Text(f"  {unit}s: {short_list(finding.lines)}"))
    return lines
