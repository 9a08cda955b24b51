"""From data files in a config to encoded train and validation sets, refusing bad rows loudly.

    prepared = prepare_data(config.data, tokenizer, seed=42)    # files or registered NAME@VERSION
    prepared.train.examples, prepared.summary()["sources"]

The config may name a registered dataset (`data.train: orders@2`), so this module reads
the registry; the registry needs only `formats.load_checked`, never this module, so the
two do not import each other. `DataError` and `load_checked` are re-exported for the tasks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tunery.data.formats import load_checked
from tunery.data.registry import resolve_data_path
from tunery.data.template_check import (
    TemplateIssue,
    check_round_trip_cached,
    report_template_issues,
    with_issues,
)
from tunery.data.tokenize import EncodedData, TemplateError, encode_examples_cached
from tunery.data.types import DataError, Example, LoadedData

__all__ = ["DataError", "PreparedData", "load_checked", "load_split", "prepare_data", "split_examples"]


@dataclass
class PreparedData:
    train: EncodedData
    validation: EncodedData | None
    sources: dict = field(default_factory=dict)  # role -> {path, format, content_hash, rows}
    # data/template_check.py; keyword-only, so subclasses' positional fields keep their places
    template_issues: list[TemplateIssue] = field(default_factory=list, kw_only=True)

    def summary(self) -> dict:
        def describe(encoded: EncodedData | None) -> dict:
            if encoded is None:
                return {}
            return {
                "examples": len(encoded.examples),
                "tokens": sum(len(e.input_ids) for e in encoded.examples),
                "supervised_tokens": sum(e.n_supervised for e in encoded.examples),
                "truncated_lines": encoded.truncated_lines,
                "dropped_lines": encoded.dropped_lines,
            }

        return {
            "sources": self.sources,
            "train": describe(self.train),
            "validation": describe(self.validation),
            "template_issue_lines": sorted({issue.line for issue in self.template_issues}),
        }


def split_examples(examples: list[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic hold-out: the same seed always holds out the same rows."""
    if share <= 0 or len(examples) < 2:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_valid = min(len(examples) - 1, max(1, round(share * len(examples))))
    held = set(order[:n_valid])
    train = [e for i, e in enumerate(examples) if i not in held]
    valid = [e for i, e in enumerate(examples) if i in held]
    return train, valid


def load_split(data_config, seed: int, fmt: str | None = None) -> tuple[list[Example], list[Example], dict]:
    """Train and validation examples from files or registered datasets, and where they came from.

    Without a validation file, `validation_split` of train is held out by `seed`.
    """
    fmt = fmt or data_config.format
    train_path, train_dataset = resolve_data_path(data_config.train)
    train_file = load_checked(train_path, fmt)
    sources = {"train": _source(train_file, train_dataset)}
    if not data_config.validation:
        train, valid = split_examples(train_file.examples, data_config.validation_split, seed)
        return train, valid, sources
    valid_path, valid_dataset = resolve_data_path(data_config.validation)
    valid_file = load_checked(valid_path, fmt)
    sources["validation"] = _source(valid_file, valid_dataset)
    return train_file.examples, valid_file.examples, sources


def prepare_data(data_config, tokenizer, seed: int) -> PreparedData:
    """Load, check, split and encode the config's data; refuses a train set with nothing left to learn."""
    train_examples, valid_examples, sources = load_split(data_config, seed)
    issues = check_templates(data_config, tokenizer, train_examples, valid_examples)

    def encode(examples: list[Example]) -> EncodedData:
        # Cached on disk by data, tokenizer, template and settings: a rerun starts training at once.
        try:
            return encode_examples_cached(examples, tokenizer, data_config.max_length, data_config.train_on)
        except TemplateError as err:  # the round-trip check saw it first and knows the row and token
            raise with_issues(err, issues) from None

    train = encode(train_examples)
    if not train.examples:
        raise DataError(
            f"{data_config.train}: no example is left to train on after truncation to data.max_length"
        )
    validation = encode(valid_examples) if valid_examples else None
    return PreparedData(
        train, validation if validation and validation.examples else None, sources, template_issues=issues
    )


def check_templates(
    data_config, tokenizer, train: list[Example], valid: list[Example]
) -> list[TemplateIssue]:
    """The template round-trip check of the train and validation rows: a warning, or an error when strict.

    Cached like the encoding, so a restart pays only the hash of the rows.
    """
    issues = []
    held_out = data_config.validation or f"{data_config.train} (held-out rows)"
    for examples, source in ((train, data_config.train), (valid, held_out)):
        found = check_round_trip_cached(examples, tokenizer) if examples else []
        report_template_issues(found, data_config.strict_template, source=source)
        issues += found
    return issues


def _source(loaded: LoadedData, dataset: str | None = None) -> dict:
    """Where rows came from; `dataset` is the registered `name@version` when the config named one."""
    return {
        **({"dataset": dataset} if dataset else {}),
        "path": loaded.path,
        "format": loaded.format,
        "content_hash": loaded.content_hash,
        "rows": loaded.n_rows,
    }
