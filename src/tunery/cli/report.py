"""`tunery compare` and `tunery report`: runs side by side, and one HTML page about a run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run directories.")],
    plot: Annotated[str, typer.Option(help="Where to write the overlaid loss curves (PNG).")] = "compare.png",
) -> None:
    """Compare runs: the config keys that differ, their metrics, and overlaid training curves."""
    if len(runs) < 2:
        raise typer.BadParameter("give at least two run directories", param_hint="RUNS")
    from tunery.evaluate.compare_runs import compare_runs, plot_runs

    comparison = compare_runs(runs)
    table = Table(title="runs compared")
    table.add_column("")
    for name in comparison.names:
        table.add_column(name, justify="right")
    for key, values in comparison.config_differences.items():
        table.add_row(key, *(_cell(value) for value in values))
    if comparison.config_differences:
        table.add_section()
    for metric, values in comparison.metrics.items():
        table.add_row(metric, *(_cell(value) for value in values))
    console.print(table)
    console.print(f"curves: {plot_runs(runs, plot)}")


def report(
    run: Annotated[str, typer.Argument(help="Run directory.")],
    out: Annotated[str | None, typer.Option(help="HTML file to write (default: RUN/report.html).")] = None,
    samples: Annotated[int, typer.Option(help="Per-example comparisons shown per evaluation.")] = 8,
) -> None:
    """Write one self-contained HTML report: config, data, curves, evaluations, examples."""
    from tunery.evaluate.report import write_report

    console.print(f"[bold green]report[/] {write_report(run, out, samples)}")


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


COMMANDS = (compare, report)
