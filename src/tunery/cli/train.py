"""`tunery train`: fine-tune from a YAML config, or resume a run; on several processes with --nproc-per-node."""

from __future__ import annotations

import os
from typing import Annotated, Any

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
) -> None:
    """Fine-tune a model; writes a run directory with the adapter, metrics and logs."""
    if config is None and resume is None and not set_:
        raise typer.BadParameter("give a config file, --set keys, or --resume RUN_DIR")
    import tunery
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
        run = tunery.train(source, overrides=overrides, resume=resume, quiet=quiet)
        if "WORLD_SIZE" in os.environ:
            return  # a rank under torchrun: the launching process prints the result
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
