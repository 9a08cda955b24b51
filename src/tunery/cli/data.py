"""`tunery data …`: look at a data set before training on it, version it, split, mix and augment it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Check, version, report on, split, mix and augment data sets.", no_args_is_help=True)


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
    strict_template: Annotated[
        bool,
        typer.Option(
            help="Template round-trip issues fail the check, as data.strict_template fails training."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a data file: per-row errors with line numbers, duplicates, token lengths, labels.

    With --model, also the template round-trip: each assistant turn's inference prompt must be an
    exact token prefix of the row's training tokens. Exits with code 1 when any row has an error.
    """
    from tunery.cli.render_data import render_data_check
    from tunery.cli.render_preview import render_template_issues
    from tunery.data import check_data, load_examples
    from tunery.data.preference import is_preference_file
    from tunery.data.template_check import check_round_trip, with_issues
    from tunery.data.tokenize import TemplateError

    if format == "auto" and is_preference_file(path):  # chosen/rejected pairs or KTO rows
        from tunery.cli.render_preference import check_preference_file

        raise typer.Exit(check_preference_file(path, model, max_length, as_json))
    loaded = load_examples(path, format=format)
    count_tokens, issues = None, []
    if model and loaded.format != "classification":
        tokenizer = _chat_tokenizer(model)
        count_tokens = _token_counter(tokenizer, max_length, train_on)
        issues = check_round_trip(loaded.examples, tokenizer)
    try:
        report = check_data(
            loaded, count_tokens=count_tokens, max_length=max_length if count_tokens else None
        )
    except TemplateError as err:  # training could not find the answers either: say where and why
        raise with_issues(err, issues, path) from None
    if as_json:
        extra = {"template_issues": [issue.to_dict() for issue in issues]} if count_tokens else {}
        typer.echo(json.dumps(report.to_dict() | extra, indent=2))
    else:
        console = Console()
        render_data_check(report, console)
        render_template_issues(issues, console, source=path, checked=count_tokens is not None)
    raise typer.Exit(0 if report.ok and not (strict_template and issues) else 1)


def _chat_tokenizer(model: str):
    """The model's tokenizer with the chat template training gives it (ChatML when it has none)."""
    from tunery.data.tokenize import ensure_chat_template
    from tunery.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(model))
    ensure_chat_template(tokenizer)
    return tokenizer


def _token_counter(tokenizer, max_length: int, train_on: str):
    from tunery.data.tokenize import token_counter

    return token_counter(tokenizer, max_length=max_length, train_on=train_on)


@app.command()
def preview(
    path: Annotated[
        str | None,
        typer.Argument(help="Data file or registered NAME[@VERSION]; default: the config's data.train."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model whose tokenizer and chat template training uses.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(help="A training config: its template, max_length, packing, batch size and seed."),
    ] = None,
    rows: Annotated[int, typer.Option(min=1, help="Rows to show, in the order epoch 0 trains them.")] = 3,
    ids: Annotated[bool, typer.Option("--ids", help="Show each token's id.")] = False,
    html: Annotated[str | None, typer.Option(help="Also write the preview as a self-contained page.")] = None,
    max_length: Annotated[int | None, typer.Option(help="data.max_length (default: the config's).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Config override key=value (repeatable).")
    ] = None,
) -> None:
    """Rows exactly as training sees them: template, truncation, packing, trained tokens highlighted."""
    from tunery.cli.render_preview import render_preview
    from tunery.data.preview import build_preview, preview_config, preview_html
    from tunery.files import write_atomic

    overrides = [*(set_ or []), *([f"data.max_length={max_length}"] if max_length else [])]
    cfg = preview_config(config=config, data=path, model=model, overrides=overrides)
    shown = build_preview(cfg, rows=rows)
    render_preview(shown, Console(), ids=ids)
    if html:
        from pathlib import Path

        write_atomic(Path(html), preview_html(shown, ids=ids))
        typer.echo(f"wrote {html}")


# --- versions ---------------------------------------------------------------------------------
@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Dataset name: letters, digits, '.', '_' and '-'.")],
    path: Annotated[str, typer.Argument(help="The file (or datasets directory) to register.")],
) -> None:
    """Register a new version of NAME and show what changed since the previous one."""
    from tunery.data.registry import DatasetStore

    added = DatasetStore().add(name, path)
    version = added.version
    if not added.is_new:
        typer.echo(f"{version.spec}: unchanged (same content as the latest version)")
        return
    typer.echo(f"{version.spec}: {version.rows} rows, {version.format}, sha256 {version.content_hash[:16]}")
    if added.diff is not None:
        typer.echo(f"  against {name}@{version.parent}: {added.diff.summary()}")


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Registered datasets with their latest version."""
    from dataclasses import asdict

    from rich.table import Table

    from tunery.data.registry import DatasetStore

    store = DatasetStore()
    latest = [store.get(name) for name in store.names()]
    if as_json:
        typer.echo(json.dumps([asdict(v) for v in latest], indent=2))
        return
    if not latest:
        typer.echo("no datasets registered; add one with `tunery data add NAME FILE`")
        return
    table = Table("name", "latest", "versions", "rows", "format", "created")
    for v in latest:
        table.add_row(
            v.name, str(v.version), str(len(store.versions(v.name))), str(v.rows), v.format, v.created
        )
    Console().print(table)


@app.command()
def show(
    spec: Annotated[str, typer.Argument(help="NAME (every version) or NAME@VERSION.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The versions of a dataset, or one version in full (hash, parent, time, rows, changes, recipe)."""
    from dataclasses import asdict

    from tunery.data.registry import DatasetStore, parse_spec

    store = DatasetStore()
    name, version = _parse(spec, parse_spec)
    versions = (
        [store.get(name, version)] if version is not None else store.versions(name) or [store.get(name)]
    )
    if as_json:
        typer.echo(json.dumps([asdict(v) for v in versions], indent=2))
        return
    for v in versions:
        changes = ", ".join(f"{n} {k}" for k, n in v.changes.items()) if v.changes else "first version"
        typer.echo(f"{v.spec}  {v.created}  {v.rows} rows  {v.format}  sha256 {v.content_hash[:16]}")
        typer.echo(f"  parent: {v.parent or '-'}  changes: {changes}")
        typer.echo(f"  from: {v.source}")
        typer.echo(f"  file: {store.file_of(v)}")
        if v.recipe:
            typer.echo(f"  recipe: {json.dumps(v.recipe)}")


@app.command()
def diff(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    old: Annotated[int, typer.Argument(help="The older version.")],
    new: Annotated[int, typer.Argument(help="The newer version.")],
) -> None:
    """Rows added, removed and changed between two versions (a changed row kept its prompt)."""
    from tunery.data.load import short_list
    from tunery.data.registry import DatasetStore

    result = DatasetStore().diff(name, old, new)
    typer.echo(f"{name}@{old} -> {name}@{new}: {result.summary()}")
    for title, lines in (
        ("added (new lines)", result.added_lines),
        ("removed (old lines)", result.removed_lines),
    ):
        if lines:
            typer.echo(f"  {title}: {short_list(lines)}")
    if result.changed_lines:
        typer.echo(f"  changed (old->new): {short_list([f'{a}->{b}' for a, b in result.changed_lines])}")


def _parse(spec: str, parse_spec):
    parsed = parse_spec(spec)
    if parsed is None:
        raise typer.BadParameter(f"'{spec}' is not NAME or NAME@VERSION")
    return parsed


# --- quality report ---------------------------------------------------------------------------
@app.command()
def report(
    path: Annotated[str, typer.Argument(help="A data file or a registered NAME[@VERSION].")],
    against: Annotated[
        list[str] | None, typer.Option(help="Validation or test file to check for leakage (repeatable).")
    ] = None,
    label_field: Annotated[
        str | None, typer.Option(help="Field holding each row's label (classification files need none).")
    ] = None,
    format: Annotated[
        str, typer.Option(help="auto, chat, instruction, completion, text, classification.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Quality and bias: imbalance, conflicts, leakage, languages, personal data, empty or copied answers."""
    from tunery.cli.render_data import render_quality_report
    from tunery.data.fields import AUGMENTATION_FIELD
    from tunery.data.formats import load_checked
    from tunery.data.load import read_rows, short_list
    from tunery.data.registry import resolve_data_path
    from tunery.data.report import quality_report

    file, _ = resolve_data_path(path)
    data = load_checked(file, format)
    holdouts = [load_checked(resolve_data_path(other)[0], format) for other in against or []]
    records = dict(read_rows(file))
    labels: dict[int, str] | None = None
    if label_field:
        raw_labels = {e.line: records[e.line].get(label_field) for e in data.examples}
        if missing := [line for line, label in raw_labels.items() if label is None]:
            raise typer.BadParameter(
                f"{len(missing)} rows have no '{label_field}' (lines {short_list(missing)})"
            )
        labels = {line: str(label) for line, label in raw_labels.items()}
    origins = {
        line: str(record[AUGMENTATION_FIELD].get("strategy"))
        for line, record in records.items()
        if isinstance(record.get(AUGMENTATION_FIELD), dict)
    }
    result = quality_report(data, against=holdouts, labels=labels, origins=origins)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render_quality_report(result, Console())


# --- splits, mixing, augmentation -------------------------------------------------------------
@app.command()
def split(
    path: Annotated[str, typer.Argument(help="A data file or a registered NAME[@VERSION].")],
    out: Annotated[str, typer.Option(help="Directory for train.jsonl, validation.jsonl, test.jsonl.")],
    validation: Annotated[float, typer.Option(help="Share of rows for validation.")] = 0.1,
    test: Annotated[float, typer.Option(help="Share of rows for test.")] = 0.0,
    seed: Annotated[int, typer.Option(help="The same seed gives the same split.")] = 42,
    stratify: Annotated[
        str | None,
        typer.Option(help="Keep each value of this field (e.g. label) in proportion in every split."),
    ] = None,
    group_by: Annotated[
        str | None, typer.Option(help="Keep all rows with the same value of this field in one split.")
    ] = None,
    dedup: Annotated[bool, typer.Option(help="Drop repeated rows before splitting.")] = False,
) -> None:
    """Deterministic train/validation/test files; augmented rows only ever go to train."""
    from tunery.data.registry import resolve_data_path
    from tunery.data.split import rows_to_split, split_rows, write_splits

    file, _ = resolve_data_path(path)
    rows, records = rows_to_split(file, label_field=stratify, group_field=group_by)
    try:
        splits = split_rows(
            rows,
            validation,
            test,
            seed,
            stratify=stratify is not None,
            group=group_by is not None,
            dedup=dedup,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    for name, written in write_splits(splits, records, out).items():
        typer.echo(f"{name}: {len(getattr(splits, name))} rows -> {written}")
    if splits.dropped_duplicates:
        typer.echo(f"dropped {len(splits.dropped_duplicates)} duplicate rows")
    if splits.dropped_augmented:
        typer.echo(f"dropped {len(splits.dropped_augmented)} augmented rows whose parent was held out")


@app.command()
def mix(
    name: Annotated[str, typer.Argument(help="The dataset the mix is registered as (a new version).")],
    sources: Annotated[
        list[str],
        typer.Argument(help="SOURCE=SHARE (orders@2=0.8, general=20%) or SOURCE=ROWS (general=200)."),
    ],
    total: Annotated[
        int | None, typer.Option(help="Rows in the mix (needed when counts and shares meet).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Which rows are sampled, and their order.")] = 0,
) -> None:
    """Blend datasets or files by shares or row counts into a new version of NAME, with its recipe."""
    import tempfile
    from pathlib import Path

    from tunery.data.fields import to_record, write_jsonl
    from tunery.data.mix import MixPart, mix_sources
    from tunery.data.registry import DatasetStore

    try:
        parts = [MixPart.parse(text) for text in sources]
        mixed = mix_sources(parts, total=total, seed=seed)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with tempfile.TemporaryDirectory() as tmp:
        file = write_jsonl([to_record(e) for e in mixed.examples], Path(tmp) / "mix.jsonl")
        added = DatasetStore().add(name, file, recipe=mixed.recipe, source="mix: " + " ".join(sources))
    counts = ", ".join(f"{s['source']} {s['count']}" for s in mixed.recipe["sources"])
    typer.echo(f"{added.version.spec}: {added.version.rows} rows ({counts})")


@app.command()
def augment(
    path: Annotated[str, typer.Argument(help="A data file or a registered NAME[@VERSION].")],
    out: Annotated[str, typer.Option(help="JSONL file for the original rows plus the new ones.")],
    strategy: Annotated[
        list[str], typer.Option(help="swap, delete, synonym, paraphrase, backtranslate (repeatable).")
    ],
    per_row: Annotated[int, typer.Option(help="Variants tried per row and strategy.")] = 1,
    alpha: Annotated[float, typer.Option(help="Share of words a token operation changes.")] = 0.1,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[str | None, typer.Option(help="paraphrase: the model that rewrites.")] = None,
    template: Annotated[
        str | None, typer.Option(help="paraphrase: prompt with {text}; default asks for a rewrite.")
    ] = None,
    translate_with: Annotated[
        str | None, typer.Option(help="backtranslate: model into the pivot language.")
    ] = None,
    translate_back_with: Annotated[
        str | None, typer.Option(help="backtranslate: model from the pivot language back.")
    ] = None,
    pivot: Annotated[str, typer.Option(help="backtranslate: the pivot language, for prompts.")] = "German",
    source_language: Annotated[str, typer.Option(help="backtranslate: the data's language.")] = "English",
) -> None:
    """Add rewritten rows that carry their origin and parent; duplicates of existing rows are rejected."""
    from rich.table import Table

    from tunery.data.augment import augment_file
    from tunery.data.fields import write_jsonl
    from tunery.data.registry import resolve_data_path

    rewriters = _rewriters(
        strategy, model, template, translate_with, translate_back_with, pivot, source_language, seed
    )
    file, _ = resolve_data_path(path)
    try:
        result = augment_file(file, strategy, per_row=per_row, seed=seed, alpha=alpha, rewriters=rewriters)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    write_jsonl(result.rows, out)
    table = Table("strategy", "produced", "rejected: duplicate", "rejected: empty", title=f"{out}")
    for name, stats in result.stats.items():
        table.add_row(name, str(stats.produced), str(stats.rejected_duplicate), str(stats.rejected_empty))
    Console().print(table)


def _rewriters(strategies, model, template, forward, back, pivot, source_language, seed) -> dict:
    from tunery.data.augment import back_translator
    from tunery.data.generation import load_rewriter

    rewriters = {}
    if "paraphrase" in strategies:
        if not model:
            raise typer.BadParameter("paraphrase needs --model")
        rewriters["paraphrase"] = load_rewriter(model, template, seed=seed)
    if "backtranslate" in strategies:
        if not (forward and back):
            raise typer.BadParameter("backtranslate needs --translate-with and --translate-back-with")
        rewriters["backtranslate"] = back_translator(
            load_rewriter(forward, language=pivot, task="translate", seed=seed),
            load_rewriter(back, language=source_language, task="translate", seed=seed),
        )
    return rewriters
