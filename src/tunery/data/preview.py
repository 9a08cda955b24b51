"""Rows as training will see them: chat template, truncation, packing and the loss mask, token by token.

A wrong loss mask trains silently on the wrong tokens, so the preview draws nothing
itself: the rows go through `prepare_data` (load, hold-out split, round-trip check,
`encode_examples_cached`), the epoch's first batches come from `plan_batches` and
`split_by_tokens` with the arguments `training/recipe.py` passes, and whether a token is
trained is read from the `collate` output the loss gets. No second implementation of
the mask exists to drift away from the real one.

    cfg = preview_config(data="data/train.jsonl", model="smollm2-135m-instruct")
    shown = build_preview(cfg, rows=3)        # or preview_config(config="examples/demo.yaml")
    shown.sequences()                          # [[PreviewRow, ...], ...]: one forward pass each
    preview_html(shown)                        # a self-contained page, everything escaped
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.data.batching import collate, plan_batches, split_by_tokens
from tunery.data.prepare import prepare_data
from tunery.data.template_check import TemplateIssue
from tunery.data.tokenize import IGNORE, Encoded, ensure_chat_template
from tunery.errors import TuneryError

if TYPE_CHECKING:
    from tunery.config import TuneryConfig

DEFAULT_ROWS = 3
# train.batch_size: auto is settled at training start from the device's memory; the preview, which
# runs on no device, packs with the former default and says so.
AUTO_BATCH_SIZE = 8
DECODE_WINDOW = 6  # tokens decoded before each one: enough for a character split over several tokens
UNFINISHED = "\ufffd"  # what a decoder writes for the first bytes of a character split over tokens


class PreviewError(TuneryError, ValueError):
    """The preview cannot show this config's rows (another task than sft)."""

    code = "invalid_request"


@dataclass(frozen=True)
class PreviewToken:
    id: int
    text: str  # what the token adds to the decoded row
    trained: bool  # carries loss: the model learns to predict it


@dataclass
class PreviewRow:
    line: int  # in the training file
    sequence: int  # the forward pass of epoch 0 it is in (packed: rows of one pass share a sequence)
    tokens: list[PreviewToken]
    tokens_before_truncation: int

    @property
    def truncated(self) -> bool:
        return self.tokens_before_truncation > len(self.tokens)

    @property
    def trained_tokens(self) -> int:
        return sum(token.trained for token in self.tokens)


@dataclass
class Preview:
    model: str
    chatml_fallback: bool  # the model ships no chat template; training uses ChatML too
    max_length: int
    train_on: str
    batching: str  # packed or grouped, as the config resolves it
    batch_size: int
    batch_size_auto: bool  # train.batch_size is auto: training settles it; shown with AUTO_BATCH_SIZE
    max_batch_tokens: int | None
    seed: int
    train_rows: int  # rows training keeps (after the hold-out and the dropped ones)
    rows: list[PreviewRow]
    dropped_lines: list[int] = field(default_factory=list)  # truncation left no trained token
    truncated_lines: list[int] = field(default_factory=list)
    template_issues: list[TemplateIssue] = field(default_factory=list)

    def sequences(self) -> list[list[PreviewRow]]:
        grouped: dict[int, list[PreviewRow]] = {}
        for row in self.rows:
            grouped.setdefault(row.sequence, []).append(row)
        return list(grouped.values())

    def to_dict(self) -> dict:
        shown = asdict(self)
        shown["template_issues"] = [issue.to_dict() for issue in self.template_issues]
        for row, data in zip(self.rows, shown["rows"], strict=True):
            data.update(truncated=row.truncated, trained_tokens=row.trained_tokens)
        return shown


def preview_config(
    config: str | Path | None = None,
    data: str | None = None,
    model: str | None = None,
    overrides: list[str] | None = None,
) -> TuneryConfig:
    """The training config the preview follows: a config file (its data or `data`), else defaults."""
    from tunery.config import ConfigError, load_config

    if config is None and data is None:
        raise ConfigError("name a data file, or a training config (--config) whose data.train is used")
    cfg = load_config(config if config is not None else {"data": {"train": data}}, overrides)
    if config is not None and data is not None:
        cfg.data.train = data
    if model:
        cfg.model.name = model
    return cfg


def build_preview(cfg: TuneryConfig, rows: int = DEFAULT_ROWS, tokenizer=None) -> Preview:
    """The first `rows` rows of epoch 0, in training order, as the loss sees them."""
    if cfg.task != "sft":
        raise PreviewError(f"the mask preview shows task=sft rows; this config trains task={cfg.task}")
    if tokenizer is None:
        from tunery.models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(cfg.model.name), cfg.model.trust_remote_code)
    fallback = ensure_chat_template(tokenizer)  # as the recipe does before preparing the data
    prepared = prepare_data(cfg.data, tokenizer, cfg.train.seed)
    batch_size = cfg.train.batch_size if isinstance(cfg.train.batch_size, int) else AUTO_BATCH_SIZE
    shown = []
    for number, piece in enumerate(first_passes(prepared.train.examples, cfg, batch_size, rows)):
        shown += _rows_of(piece, number, tokenizer, cfg.batching)
    return Preview(
        model=cfg.model.name, chatml_fallback=fallback, max_length=cfg.data.max_length,
        train_on=cfg.data.train_on, batching=cfg.batching, batch_size=batch_size,
        batch_size_auto=batch_size != cfg.train.batch_size,        max_batch_tokens=cfg.train.max_batch_tokens, seed=cfg.train.seed,
        train_rows=len(prepared.train.examples), rows=shown[:rows],
        dropped_lines=prepared.train.dropped_lines, truncated_lines=prepared.train.truncated_lines,
        template_issues=prepared.template_issues,
    )  # fmt: skip


def first_passes(
    examples: list[Encoded], cfg: TuneryConfig, batch_size: int, rows: int
) -> list[list[Encoded]]:
    """The forward passes of epoch 0 until they hold `rows` rows: the recipe's batch plan and split."""
    lengths = [len(example.input_ids) for example in examples]
    batches = plan_batches(
        lengths, batch_size, cfg.train.seed, 0, group_by_length=cfg.batching == "grouped"
    )  # = training/recipe.py::optimizer_steps, flattened over the grad_accum grouping
    passes: list[list[Encoded]] = []
    for batch in batches:
        if sum(len(piece) for piece in passes) >= rows:
            break
        # = recipe.train_step: each micro-batch runs in passes of at most train.max_batch_tokens
        passes += split_by_tokens([examples[i] for i in batch], cfg.train.max_batch_tokens, cfg.batching)
    return passes


def _rows_of(piece: list[Encoded], number: int, tokenizer, batching: str) -> list[PreviewRow]:
    """Each row of one forward pass with the labels the loss gets (the collated tensor, not a copy)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    labels = collate(piece, batching, pad_id)["labels"].tolist()
    start = 0
    rows = []
    for index, example in enumerate(piece):
        n = len(example.input_ids)
        if batching == "packed":
            own, start = labels[0][start : start + n], start + n
        else:
            own = labels[index][:n]
        # The loss predicts token t from the tokens before it: a row's first token is never a target.
        trained = [position > 0 and label != IGNORE for position, label in enumerate(own)]
        texts = token_texts(tokenizer, example.input_ids)
        tokens = [PreviewToken(*t) for t in zip(example.input_ids, texts, trained, strict=True)]
        rows.append(PreviewRow(example.line, number, tokens, example.n_tokens_before_truncation))
    return rows


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """What each token adds to the decoded text (a character split over tokens goes to its last one).

    Decoding the few tokens before each one and taking the difference keeps what decoding a token
    alone loses: a sentencepiece word's leading space, a byte-level character's other bytes (an
    unfinished one decodes as U+FFFD, so it is left for the token that finishes it).
    """
    texts = []
    for i, token in enumerate(ids):
        window = ids[max(0, i - DECODE_WINDOW) : i]
        before = _decode(tokenizer, window).rstrip(UNFINISHED)
        through = _decode(tokenizer, [*window, token]).rstrip(UNFINISHED)
        texts.append(through[len(before) :] if through.startswith(before) else _decode(tokenizer, [token]))
    return texts


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def preview_html(preview: Preview, ids: bool = False, page: bool = True) -> str:
    """The preview as HTML: a whole self-contained page, or (page=False) a fragment for the dashboard.

    Jinja2 escapes every value (token texts, lines, model names), so a row cannot inject markup.
    """
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("tunery.data", ""), autoescape=True, trim_blocks=True)
    return env.get_template("preview.html.j2").render(preview=preview, ids=ids, page=page)
