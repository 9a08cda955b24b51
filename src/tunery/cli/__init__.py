"""The `tunery` command: one small module per group of commands.

    tunery data check my.jsonl --model smollm2-135m-instruct
    tunery train config.yaml --set lora.r=16
    tunery eval runs/<run> ; tunery chat runs/<run> --prompt "…" ; tunery merge runs/<run> out/merged

Mistakes a user can make (bad data, bad config, unknown model) end with one
clear message and exit code 2, never a traceback; TUNERY_DEBUG=1 shows it anyway.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import typer
from rich.console import Console

from tunery.cli import data, export, methods, report, service, train, use

app = typer.Typer(
    help="Fine-tune LLMs on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("methods")(methods.methods)
app.command("serve")(service.serve)
app.command("worker")(service.worker)
app.add_typer(service.keys, name="keys")
for command in (*use.COMMANDS, *report.COMMANDS, *export.COMMANDS):
    app.command()(command)

err_console = Console(stderr=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from what the user gave us; their messages say what to do."""
    from tunery.cli.export import PushFailed
    from tunery.config import ConfigError
    from tunery.data.prepare import DataError
    from tunery.data.tokenize import TemplateError
    from tunery.data.types import DataFileError
    from tunery.merge import CannotMerge
    from tunery.methods import MethodUnavailable
    from tunery.models import ModelNotFoundError

    errors: list[type[BaseException]] = [
        ConfigError, DataFileError, DataError, ModelNotFoundError, TemplateError, FileNotFoundError, FileExistsError,
        CannotMerge, MethodUnavailable, PushFailed,
    ]  # fmt: skip
    if "tunery.training.recipe" in sys.modules:  # only importable with torch; loaded if training ran
        from tunery.training.checkpoint import CheckpointError
        from tunery.training.memory import TrainingOutOfMemory
        from tunery.training.recipe import TrainingDiverged

        errors.extend([TrainingDiverged, TrainingOutOfMemory, CheckpointError])
    return tuple(errors)


def quiet_libraries() -> None:
    """Keep the terminal for our own output: no loading bars, no warnings meant for library authors."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading bars follow it
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)  # optional CPU kernel package
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=DeprecationWarning)


def main() -> None:
    quiet_libraries()
    try:
        app()
    except Exception as err:
        if os.environ.get("TUNERY_DEBUG") or not isinstance(err, user_errors()):
            raise
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
