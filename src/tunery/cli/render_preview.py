"""The mask preview and the template round-trip check on a terminal.

    render_preview(build_preview(cfg, rows=3), Console(), ids=True)
    render_template_issues(check_round_trip(examples, tokenizer), Console())

Trained tokens are drawn on green, untrained ones dimmed; a newline shows as `↵` so a
trained line break (ChatML's after `<|im_end|>`) can be seen. Token texts go in as
`rich.text.Text` pieces, never as markup, so a row cannot restyle the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from tunery.data.preview import Preview, PreviewRow
    from tunery.data.template_check import TemplateIssue

TRAINED = "black on green3"
UNTRAINED = "grey50"


def render_preview(preview: Preview, console: Console, ids: bool = False) -> None:
    from rich.rule import Rule

    console.print(_header(preview))
    if preview.template_issues:
        render_template_issues(preview.template_issues, console)
    for number, sequence in enumerate(preview.sequences(), start=1):
        kind = "packed sequence" if preview.batching == "packed" else "padded batch"
        lines = ", ".join(str(row.line) for row in sequence)
        console.print(Rule(f"{kind} {number}: lines {lines}", align="left"))
        for index, row in enumerate(sequence):
            if index and preview.batching == "packed":
                console.print(f"┄┄ line {row.line} starts here: it attends only to itself ┄┄", style="yellow")
            console.print(_row(row, ids))
    if preview.dropped_lines:
        from tunery.data.load import short_list

        console.print(
            f"left out of training (no trained token after truncation): lines {short_list(preview.dropped_lines)}",
            style="yellow",
        )


def render_template_issues(
    issues: list[TemplateIssue], console: Console, source: str = "", checked: bool = True
) -> None:
    """The issues in yellow; with none, a line saying the check ran (when it did) and passed."""
    from rich.text import Text

    from tunery.data.template_check import describe_issues

    if issues:
        console.print(Text(describe_issues(issues, source), style="yellow"))
    elif checked:
        console.print(
            "template round-trip: every assistant turn's inference prompt is a prefix of its "
            "training tokens, and every trained turn ends with the end-of-turn token",
            style="green",
        )


def _header(preview: Preview):
    from rich.text import Text

    template = "ChatML (it ships no chat template)" if preview.chatml_fallback else "its own chat template"
    batch = f"batch_size {preview.batch_size}" + (
        " (auto: training settles it at start)" if preview.batch_size_auto else ""
    )
    text = Text()
    text.append(f"model {preview.model} with {template}\n", style="bold")
    text.append(
        f"max_length {preview.max_length}, train_on {preview.train_on}, batching {preview.batching}, {batch}, "
        f"max_batch_tokens {preview.max_batch_tokens}, seed {preview.seed}\n"
        f"the first {len(preview.rows)} of {preview.train_rows} training rows, in the order epoch 0 trains them: "
    )
    text.append("trained", style=TRAINED)
    text.append(" ")
    text.append("not trained", style=UNTRAINED)
    return text


def _row(row: PreviewRow, ids: bool):
    from rich.text import Text

    text = Text()
    cut = f", truncated from {row.tokens_before_truncation}" if row.truncated else ""
    text.append(
        f"line {row.line}: {len(row.tokens)} tokens, {row.trained_tokens} trained{cut}\n", style="bold"
    )
    for token in row.tokens:
        text.append(token.text.replace("\n", "↵"), style=TRAINED if token.trained else UNTRAINED)
        if ids:
            text.append(f"[{token.id}]", style="blue")
        text.append("\n" * token.text.count("\n"))  # the line break after the id, not before it
    if row.truncated:
        text.append(
            f" [{row.tokens_before_truncation - len(row.tokens)} more tokens cut by max_length]", style="red"
        )
    return text
