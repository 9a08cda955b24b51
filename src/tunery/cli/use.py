"""Use a finished run: `tunery eval`, `tunery chat`, `tunery merge`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
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
    check: Annotated[
        list[str] | None,
        typer.Option(
            help="Format check of answers, repeatable: json, regex:PATTERN, labels:A,B, max_chars:N."
        ),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sample at this temperature (default: greedy decoding).")
    ] = None,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling share, with --temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
    name: Annotated[
        str | None, typer.Option(help="Results folder eval/NAME (default: the data file's stem).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation summary as JSON.")] = False,
    harness: Annotated[
        str | None,
        typer.Option(
            help="lm-evaluation-harness tasks, comma-separated: run them instead (the [harness] extra)."
        ),
    ] = None,
    harness_include: Annotated[
        list[str] | None, typer.Option(help="A task YAML or a folder of them for --harness; repeatable.")
    ] = None,
    harness_chat: Annotated[
        bool,
        typer.Option(
            help="--harness: render requests with the model's chat template, as a chat model is used."
        ),
    ] = False,
    system: Annotated[
        str | None, typer.Option(help="--harness-chat: a system turn before each request.")
    ] = None,
) -> None:
    """Evaluate a run and its base model: loss, perplexity, generation scores, format checks, forgetting.

    Writes RUN/eval/NAME/metrics.json and examples.jsonl (prompt, reference, base and tuned output, scores).
    """
    if harness is not None:
        _harness(run, harness, harness_include or [], base, limit, name, as_json, (harness_chat, system))
        return
    from tunery.evaluate.checks import CheckError, parse_check

    try:
        checks = [parse_check(text) for text in check or []]
    except CheckError as err:
        raise typer.BadParameter(str(err), param_hint="--check") from None
    from tunery.evaluate import evaluate_run

    evaluation = evaluate_run(
        run, data, with_base=base, limit=limit, max_new_tokens=max_new_tokens, checks=checks,
        temperature=temperature, top_p=top_p, seed=seed, name=name,
    )  # fmt: skip
    _show_evaluation(evaluation, run, as_json)


def _show_evaluation(evaluation, run: str, as_json: bool) -> None:
    """Print what `tunery eval` measured: win rates for pairs, accuracy for labels, scores and samples otherwise."""
    if isinstance(evaluation, dict) and "preference" in evaluation:  # pairs: win rates, base vs tuned
        typer.echo(json.dumps(evaluation, indent=2) if as_json else _preference_text(evaluation))
        return
    if isinstance(evaluation, dict):  # a classification run: accuracy, F1, confusion matrix
        typer.echo(json.dumps(evaluation, indent=2) if as_json else _classification_text(evaluation))
        return
    if as_json:
        typer.echo(json.dumps(evaluation.summary(), indent=2))
        return
    console.print(scores_table(evaluation))
    change = evaluation.forgetting.get("change_percent")
    if change is not None:
        console.print(f"forgetting check: general-text perplexity {change:+.1f}% after tuning")
    for sample in evaluation.samples[:3]:
        for label in ("prompt", "base", "tuned", "reference"):
            if sample[label] is not None:
                print_answer(f"{label:<10}", sample[label])
        console.print()
    console.print(f"[dim]per-example results: {Path(run) / 'eval' / evaluation.name}[/]")


def _harness(
    run: str,
    tasks: str,
    include: list[str],
    base: bool,
    limit,
    name,
    as_json: bool,
    chat: tuple[bool, str | None],
) -> None:
    """`tunery eval RUN --harness TASKS`: lm-eval scores, base and tuned, into RUN/eval/harness/."""
    from tunery.evaluate.harness import harness_evaluate

    names = [task.strip() for task in tasks.split(",") if task.strip()]
    if not names:
        raise typer.BadParameter("name at least one task", param_hint="--harness")
    summary = harness_evaluate(
        run, names, include, with_base=base, limit=limit, name=name or "harness", chat=chat[0], system=chat[1]
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=summary["data"])
    for column in ("metric", *(["base"] if summary["base"] else []), "tuned"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, value in summary["tuned"].items():
        base_value = [_number(summary["base"].get(metric))] if summary["base"] else []
        table.add_row(metric, *base_value, _number(value))
    console.print(table)
    console.print(f"[dim]harness results: {Path(run) / 'eval' / (name or 'harness')}[/]")


def scores_table(evaluation) -> Table:
    """Metrics down, base and tuned across."""
    table = Table(title=f"{evaluation.data} ({evaluation.examples} examples)")
    models = (
        [("base", evaluation.base), ("tuned", evaluation.tuned)]
        if evaluation.base
        else [("tuned", evaluation.tuned)]
    )
    table.add_column("metric")
    for model, _ in models:
        table.add_column(model, justify="right")
    tuned = asdict(evaluation.tuned)
    for metric, value in tuned.items():
        if metric == "formats" or value is None:
            continue
        table.add_row(metric, *(_number(getattr(scores, metric)) for _, scores in models))
    for check in tuned["formats"]:
        table.add_row(f"format {check}", *(f"{scores.formats[check]:.1%}" for _, scores in models))
    return table


def _classification_text(summary: dict) -> str:
    scores = summary["classification"]
    lines = [f"{summary['data']} ({summary['examples']} examples)"]
    lines += [f"{name:>9}: {summary['tuned'][name]:.4f}" for name in ("accuracy", "macro_f1", "micro_f1")]
    lines += ["confusion (rows true, columns predicted): " + " ".join(scores["labels"])]
    lines += [f"{label:>12} {row}" for label, row in zip(scores["labels"], scores["confusion"], strict=True)]
    return "\n".join(lines)


def _preference_text(summary: dict) -> str:
    """Win rates and log-probs down, base and tuned across (preference pairs)."""
    base, tuned = summary["base"] or {}, summary["tuned"]
    lines = [f"{summary['data']} ({summary['examples']} pairs)", f"{'metric':>20} {'base':>10} {'tuned':>10}"]
    lines += [
        f"{metric:>20} {_number(base.get(metric)):>10} {_number(value):>10}"
        for metric, value in tuned.items()
    ]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


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
        print_answer("", answer)


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
    from tunery.inference import merge_run

    path = merge_run(run, out)
    console.print(f"[bold green]merged[/] {run} -> {path}")


COMMANDS = (eval, chat, merge)


def print_answer(label: str, text: str) -> None:
    """A model's text as it is: never wrapped at the console's width (JSON stays on one line in a pipe), never
    read as markup."""
    from rich.text import Text

    line = Text.assemble((label, "dim"), text) if label else Text(text)
    console.print(line, soft_wrap=True, highlight=False)
