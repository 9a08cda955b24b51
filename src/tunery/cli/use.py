"""Use a finished run: `tunery eval`, `tunery chat`, `tunery merge`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def eval(  # noqa: A001 - the command is called eval
    run: Annotated[str, typer.Argument(help="Run directory.")],
    data: Annotated[
        str | None, typer.Option(help="Held-out data (default: the run's validation file).")
    ] = None,
    base: Annotated[bool, typer.Option(help="Also evaluate the base model, side by side.")] = True,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N examples.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per answer.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
) -> None:
    """Evaluate a run (and its base model): loss, perplexity, exact match of generated answers."""
    from tunery.evaluate import evaluate_run

    evaluation = evaluate_run(run, data, with_base=base, limit=limit, max_new_tokens=max_new_tokens)
    if as_json:
        typer.echo(json.dumps(evaluation.to_dict(), indent=2))
        return
    table = Table(title=f"{evaluation.data} ({evaluation.examples} examples)")
    for column in ("model", "loss", "perplexity", "exact match"):
        table.add_column(column, justify="right" if column != "model" else "left")
    rows = (
        [("base", evaluation.base), ("tuned", evaluation.tuned)]
        if evaluation.base
        else [("tuned", evaluation.tuned)]
    )
    for name, scores in rows:
        match = "-" if scores.exact_match is None else f"{scores.exact_match:.1%}"
        table.add_row(name, f"{scores.loss:.4f}", f"{scores.perplexity:.2f}", match)
    console.print(table)
    for sample in evaluation.samples[:3]:
        console.print(f"[dim]prompt[/]    {sample['prompt']}", highlight=False)
        if sample["base"] is not None:
            console.print(f"[dim]base[/]      {sample['base']}", highlight=False)
        console.print(f"[dim]tuned[/]     {sample['tuned']}", highlight=False)
        console.print(f"[dim]reference[/] {sample['reference']}\n", highlight=False)


def chat(
    run: Annotated[str, typer.Argument(help="Run directory.")],
    prompt: Annotated[
        str | None, typer.Option(help="Answer this and exit (default: an interactive chat).")
    ] = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per answer.")] = 256,
) -> None:
    """Chat with a fine-tuned model."""
    from tunery.inference import generate, load_run_model

    model, tokenizer = load_run_model(run)
    history = [{"role": "system", "content": system}] if system else []
    questions = [prompt] if prompt is not None else _ask_forever()
    for question in questions:
        history.append({"role": "user", "content": question})
        (answer,) = generate(model, tokenizer, [history], max_new_tokens=max_new_tokens)
        history.append({"role": "assistant", "content": answer})
        console.print(answer, highlight=False, markup=False)


def _ask_forever():
    console.print("[dim]chat: empty line or Ctrl-D to leave[/]")
    while True:
        try:
            question = console.input("[bold]> [/]")
        except EOFError:
            return
        if not question.strip():
            return
        yield question


def merge(
    run: Annotated[str, typer.Argument(help="Run directory.")],
    out: Annotated[str, typer.Argument(help="New folder for the merged model.")],
) -> None:
    """Merge the adapter into the base model: a safetensors model plain transformers loads."""
    from tunery.merge import merge_run

    path = merge_run(run, out)
    console.print(f"[bold green]merged[/] {run} -> {path}")


COMMANDS = (eval, chat, merge)
