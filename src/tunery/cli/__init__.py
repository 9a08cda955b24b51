"""The `tunery` command: one small module per group of commands.

    tunery data check my.jsonl --model smollm2-135m-instruct
    tunery train config.yaml --set lora.r=16
    tunery eval runs/<run> ; tunery chat runs/<run> --prompt "…" ; tunery merge runs/<run> out/merged

Mistakes a user can make (bad data, bad config, unknown model) end with one
clear message and exit code 2, never a traceback; TUNERY_DEBUG=1 shows it anyway.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from tunery.cli import data, train, use

app = typer.Typer(
    help="Fine-tune LLMs on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.command("train")(train.train)
for command in use.COMMANDS:
    app.command()(command)

err_console = Console(stderr=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from what the user gave us; their messages say what to do."""
    from tunery.config import ConfigError
    from tunery.data.prepare import DataError
    from tunery.data.tokenize import TemplateError
    from tunery.data.types import DataFileError
    from tunery.models import ModelNotFoundError

    errors: list[type[BaseException]] = [
        ConfigError, DataFileError, DataError, ModelNotFoundError, TemplateError, FileNotFoundError, FileExistsError
    ]  # fmt: skip
    if "tunery.training.recipe" in sys.modules:  # only importable with torch; loaded if training ran
        from tunery.training.recipe import TrainingDiverged

        errors.append(TrainingDiverged)
    return tuple(errors)


def main() -> None:
    try:
        app()
    except Exception as err:
        if os.environ.get("TUNERY_DEBUG") or not isinstance(err, user_errors()):
            raise
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
