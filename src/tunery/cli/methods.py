"""`tunery methods`: every fine-tuning method, what it is for, and its cost on a model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tunery.config.registry import TASK_NAMES


def methods(
    model: Annotated[
        str | None,
        typer.Option(help="Count trainable parameters and memory for this model (alias, path, hub id)."),
    ] = None,
    task: Annotated[str, typer.Option(help=f"{', '.join(TASK_NAMES[:-1])} or {TASK_NAMES[-1]}.")] = "sft",
) -> None:
    """List the fine-tuning methods (`method:` in the config); with --model, their size and memory."""
    from tunery.methods.estimate import estimate_methods

    rows = estimate_methods(model, task)
    table = Table(title=f"methods for {model} ({task})" if model else "methods")
    table.add_column("method")
    if model:
        for column in ("trainable", "%", "memory (GB)"):
            table.add_column(column, justify="right")
    table.add_column("merge")
    table.add_column("what it is for")
    for row in rows:
        sizes = []
        if model:
            sizes = (
                [f"{row.trainable:,}", f"{row.percent:.3f}", f"{row.memory_gb:.2f}"]
                if row.trainable is not None
                else ["-", "-", "-"]
            )
        table.add_row(row.method, *sizes, "yes" if row.mergeable else "no", row.note or row.summary)
    Console().print(table)
    if model:
        Console().print("[dim]memory: weights + gradients + AdamW state in fp32, activations excluded[/]")
