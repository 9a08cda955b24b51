"""`tunery data …`: look at a data set before training on it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Check data sets.", no_args_is_help=True)


@app.command()
def check(
    path: Annotated[str, typer.Argument(help="JSONL, JSON, CSV, Parquet file or a datasets directory.")],
    model: Annotated[
        str | None, typer.Option(help="Count tokens with this model's tokenizer and chat template.")
    ] = None,
    format: Annotated[
        str, typer.Option(help="auto, chat, instruction, completion, text, classification.")
    ] = "auto",
    max_length: Annotated[int, typer.Option(help="Tokens per example in training.")] = 1024,
    train_on: Annotated[str, typer.Option(help="assistant or all: which tokens carry loss.")] = "assistant",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a data file: per-row errors with line numbers, duplicates, token lengths, labels.

    Exits with code 1 when any row has an error.
    """
    from tunery.data import check_data, load_examples, render_report

    loaded = load_examples(path, format=format)
    count_tokens = None
    if model and loaded.format != "classification":
        count_tokens = _token_counter(model, max_length, train_on)
    report = check_data(loaded, count_tokens=count_tokens, max_length=max_length if count_tokens else None)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report, Console())
    raise typer.Exit(0 if report.ok else 1)


def _token_counter(model: str, max_length: int, train_on: str):
    from tunery.data.tokenize import ensure_chat_template, token_counter
    from tunery.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(model))
    ensure_chat_template(tokenizer)
    return token_counter(tokenizer, max_length=max_length, train_on=train_on)
