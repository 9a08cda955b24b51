"""`tunery data audit RUN`: which rows a run never learned, which look mislabelled, which it memorised.

    tunery data audit runs/demo                          # the run's own train and validation rows
    tunery data audit runs/demo --data more.jsonl --top 30
    tunery data audit runs/demo --drop-flagged           # + a dataset version without the flagged rows

The work is `tunery.evaluate.audit.audit_run`; this module prints its worst rows as a table.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from tunery.evaluate.audit import Audit

SNIPPET = 48  # characters of a prompt or answer in the terminal table


def audit(
    run: Annotated[str, typer.Argument(help="A finished run directory.")],
    data: Annotated[
        str | None,
        typer.Option(help="Audit this file or NAME@VERSION instead of the run's train and validation rows."),
    ] = None,
    out: Annotated[str | None, typer.Option(help="Folder for the tables (default: RUN/audit/NAME).")] = None,
    drop_flagged: Annotated[
        bool, typer.Option("--drop-flagged", help="Register a dataset version without the flagged rows.")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="Dataset name for --drop-flagged when the rows come from a plain file.")
    ] = None,
    batch_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens per forward pass (default 8192).")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="Rows shown in the terminal, worst first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score every row under the tuned and the base model: loss, loss drop and flags, worst rows first.

    Writes rows.csv, rows.jsonl, summary.json and audit.html.
    """
    from tunery.evaluate.audit import audit_run

    result = audit_run(run, data, out, batch_tokens, drop=drop_flagged, dataset_name=name)
    if as_json:
        typer.echo(json.dumps({**result.summary, "folder": str(result.folder)}, indent=2, default=str))
        return
    render_audit(result, Console(), top)


def render_audit(result: Audit, console: Console, top: int) -> None:
    from rich.table import Table

    summary = result.summary
    counts = ", ".join(f"{name} {count}" for name, count in summary["flags"].items())
    timing = summary["timing"]
    console.print(
        f"{summary['rows']} rows scored under the tuned and the base model in {timing['seconds']:.1f} s "
        f"({timing['rows_per_s']:.0f} rows/s, {timing['strategy']}); {summary['flagged']} flagged: {counts}",
        highlight=False,
    )
    for source in summary["data"]:
        for skip in source["skipped"][:5]:
            console.print(f"skipped {escape(source['path'])} line {skip['line']}: {escape(skip['reason'])}")
        for warning in source["warnings"]:
            console.print(f"[yellow]warning:[/] {escape(warning)}")
    if top:
        table = Table(
            "#", "split", "line", "flags", "tuned", "base", "drop", "prompt", "answer", "model says"
        )
        for rank, row in enumerate(result.rows[:top], start=1):
            table.add_row(
                str(rank), row.split, str(row.line), escape(", ".join(row.flags)), f"{row.tuned_loss:.3f}",
                f"{row.base_loss:.3f}", f"{row.loss_drop:.3f}", _snippet(row.prompt), _snippet(row.answer),
                _snippet(row.predicted),
            )  # fmt: skip
        console.print(table)
    console.print(f"tables: {escape(str(result.folder))}/rows.csv, rows.jsonl, audit.html", highlight=False)
    if summary.get("new_versions") == []:
        console.print("no row is flagged: no new dataset version")
    for version in summary.get("new_versions", []):
        console.print(
            f"{version['dataset']}: {version['rows']} rows, {version['parent']} without "
            f"{len(version['dropped_lines'])} flagged lines",
            highlight=False,
        )


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return escape(flat if len(flat) <= SNIPPET else flat[: SNIPPET - 1] + "…")
