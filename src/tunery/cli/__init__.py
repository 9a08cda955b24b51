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
from rich.markup import escape

from tunery.cli import audit, data, export, methods, report, service, train, use
from tunery.errors import error_code
from tunery.libraries import quiet_libraries

app = typer.Typer(
    help="Fine-tune LLMs on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
data.app.command("audit")(audit.audit)
app.command("train")(train.train)
app.command("methods")(methods.methods)
app.command("serve")(service.serve)
app.command("worker")(service.worker)
app.add_typer(service.keys, name="keys")
for command in (*use.COMMANDS, *report.COMMANDS, *export.COMMANDS):
    app.command()(command)

err_console = Console(stderr=True)


def main() -> None:
    quiet_libraries()
    try:
        app()
    except Exception as err:
        if os.environ.get("TUNERY_DEBUG") or error_code(err) is None:
            raise
        err_console.print(
            f"[bold red]error:[/] {escape(str(err))}", highlight=False, markup=True, soft_wrap=True
        )
        sys.exit(2)
