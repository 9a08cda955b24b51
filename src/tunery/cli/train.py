"""`tunery train`: fine-tune from a YAML config, or resume a run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def train(
    config: Annotated[str | None, typer.Argument(help="YAML config (see examples/demo.yaml).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set lora.r=16 --set train.epochs=2."),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="A run directory: continue from its newest complete checkpoint.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    load_best: Annotated[
        bool, typer.Option("--load-best", help="Keep the lowest-validation-loss adapter (train.load_best).")
    ] = False,
) -> None:
    """Fine-tune a model; writes a run directory with the adapter, metrics and logs."""
    if config is None and resume is None and not set_:
        raise typer.BadParameter("give a config file, --set keys, or --resume RUN_DIR")
    import tunery

    overrides = [*(set_ or []), *(["train.load_best=true"] if load_best else [])]
    run = tunery.train(config if config or resume else {}, overrides=overrides, resume=resume, quiet=quiet)
    metrics = run.metrics
    Console().print(
        f"[bold green]done[/] {run.path}: {metrics['steps']} steps, train loss {metrics['train_loss']}, "
        f"validation loss {metrics['val_loss']}, {metrics['tokens_per_s']} supervised tokens/s"
    )
    if metrics.get("best_step") is not None:
        kept = metrics.get("adapter_step", metrics["steps"])
        Console().print(f"best checkpoint: step {metrics['best_step']}; the adapter is from step {kept}")
    for warning in run.record["warnings"]:
        Console().print(f"[yellow]warning[/] step {warning['step']}: {warning['message']}", highlight=False)
