"""`tunery train`: fine-tune from a YAML config, or resume a run; on several processes with --nproc-per-node."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console

# train.*: auto (training/auto.py, docs/auto.md)
Explain = Annotated[
    bool,
    typer.Option(
        "--explain", help="Print each auto choice (lr, epochs, batch size) with its reason and numbers."
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Make the auto choices (the lr range test included), print them and stop."
    ),
]


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
    report_to: Annotated[
        list[str] | None,
        typer.Option(
            "--report-to",
            help="Experiment tracker, repeatable: tensorboard, mlflow, wandb (train.report_to).",
        ),
    ] = None,
    nproc_per_node: Annotated[
        int,
        typer.Option(
            "--nproc-per-node", min=1, help="Processes on this machine (one per GPU); >1: torchrun."
        ),
    ] = 1,
    nnodes: Annotated[int, typer.Option("--nnodes", min=1, help="Machines the run spans.")] = 1,
    node_rank: Annotated[
        int, typer.Option("--node-rank", min=0, help="This machine's rank, 0 … nnodes-1.")
    ] = 0,
    master_addr: Annotated[
        str | None, typer.Option("--master-addr", help="Address of the machine with --node-rank 0.")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option("--master-port", help="Its rendezvous port (29500).")
    ] = None,
    explain: Explain = False,
    dry_run: DryRun = False,
) -> None:
    """Fine-tune a model; writes a run directory with the adapter, metrics and logs."""
    if config is None and resume is None and not set_:
        raise typer.BadParameter("give a config file, --set keys, or --resume RUN_DIR")
    from tunery.launch import Launch, LaunchFailed, launch_training

    overrides = [*(set_ or []), *(["train.load_best=true"] if load_best else [])]
    if report_to:
        trackers = [name.strip() for item in report_to for name in item.split(",") if name.strip()]
        overrides.append(f"train.report_to=[{', '.join(trackers)}]")
    source: str | dict[str, Any] | None = config if config or resume else {}
    launch = Launch(nproc_per_node, nnodes, node_rank, master_addr, master_port)
    if launch.world > 1 and "WORLD_SIZE" not in os.environ:  # not yet inside torchrun: launch it
        try:
            run = launch_training(source, overrides, resume, launch, quiet=quiet)
        except LaunchFailed as err:
            Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(1) from None
    else:
        from tunery.training.recipe import train as train_run

        show = print_auto_choices if (explain or dry_run) and "WORLD_SIZE" not in os.environ else None
        run = train_run(source, overrides, resume, quiet, on_ready=show, dry_run=dry_run)
        if "WORLD_SIZE" in os.environ or dry_run:
            return  # a rank under torchrun: the launching process prints the result
    if explain and launch.world > 1:
        print_auto_choices(run)
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


def print_auto_choices(run) -> None:
    """The run's auto choices (run.json `auto`): key, value, reason, the numbers behind it."""
    from rich.table import Table

    choices = (run.record.get("auto") or {}).get("choices") or []
    if not choices:
        Console().print("no auto values: train.lr, train.epochs and train.batch_size are all set")
        return
    table = Table("key", "value", "why", "numbers", title=f"auto choices of {run.path}", show_lines=True)
    for choice in choices:
        numbers = ", ".join(f"{k}={_number(v)}" for k, v in choice["numbers"].items() if v is not None)
        value = "-" if choice["value"] is None else _number(choice["value"])
        table.add_row(choice["key"], value, choice["reason"], numbers)
    Console().print(table)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
