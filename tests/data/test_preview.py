"""The mask preview shows rows as training sees them: its tokens, trained flags, truncation and packed
sequences are compared here with what the recipe's own functions give the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import chat_rows, write_jsonl
from tests.data.conftest import qa
from tunery.config import ConfigError
from tunery.data.batching import collate, split_by_tokens
from tunery.data.prepare import load_split, prepare_data
from tunery.data.preview import PreviewError, build_preview, preview_config, preview_html, token_texts
from tunery.data.tokenize import IGNORE, render
from tunery.data.types import DataError, DataFileError

FIXED = ["train.batch_size=4", "train.seed=3"]  # batch_size auto would be settled by training on a device


@pytest.fixture
def orders(tmp_path) -> Path:
    return write_jsonl(tmp_path / "orders.jsonl", chat_rows(16))


def test_the_rows_come_in_the_order_and_packs_of_the_first_training_passes(orders, tiny_tokenizer):
    from tunery.training.recipe import optimizer_steps

    cfg = preview_config(data=str(orders), overrides=FIXED)
    shown = build_preview(cfg, rows=6, tokenizer=tiny_tokenizer)
    prepared = prepare_data(cfg.data, tiny_tokenizer, cfg.train.seed)
    steps = optimizer_steps(prepared.train, cfg, epoch=0)
    passes = [
        [example.line for example in piece]
        for step in steps
        for batch in step
        for piece in split_by_tokens([prepared.train.examples[i] for i in batch], 1024, "packed")
    ]
    assert [[row.line for row in sequence] for sequence in shown.sequences()] == [passes[0], passes[1][:2]]
    assert shown.batching == "packed" and shown.train_rows == len(prepared.train.examples) == 14  # 2 held out


def test_trained_flags_are_the_labels_the_loss_gets(orders, tiny_tokenizer):
    cfg = preview_config(data=str(orders), overrides=FIXED)
    shown = build_preview(cfg, rows=4, tokenizer=tiny_tokenizer)
    encoded = {e.line: e for e in prepare_data(cfg.data, tiny_tokenizer, cfg.train.seed).train.examples}
    for sequence in shown.sequences():
        labels = collate([encoded[row.line] for row in sequence], "packed", 0)["labels"][0].tolist()
        flags = [token.trained for row in sequence for token in row.tokens]
        assert flags == [label != IGNORE for label in labels]
        for row in sequence:
            assert [token.id for token in row.tokens] == encoded[row.line].input_ids
            assert not row.tokens[0].trained  # nothing predicts a row's first token
    answer = "".join(token.text for token in shown.rows[0].tokens if token.trained)
    assert answer.startswith('{"item": ') and answer.endswith("}<|im_end|>\n")


def test_the_token_texts_put_the_rendered_row_back_together(tiny_tokenizer, tmp_path):
    rows = write_jsonl(tmp_path / "accents.jsonl", [qa("café ☕ naïve", "façade — ok"), qa("x", "y")])
    cfg = preview_config(data=str(rows), overrides=[*FIXED, "data.validation_split=0"])
    shown = build_preview(cfg, rows=2, tokenizer=tiny_tokenizer)
    examples = {e.line: e for e in load_split(cfg.data, 3)[0]}
    for row in shown.rows:
        assert (
            "".join(token.text for token in row.tokens)
            == render(examples[row.line], tiny_tokenizer, "assistant")[0]
        )


def test_a_character_split_over_tokens_is_shown_once():
    from tests.conftest import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    ids = tokenizer("☕☕", add_special_tokens=False)["input_ids"]
    assert len(ids) > 2  # byte-level: each cup is several tokens
    texts = token_texts(tokenizer, ids)
    assert "".join(texts) == "☕☕" and texts.count("☕") == 2


def test_truncation_and_dropped_rows_are_shown(tiny_tokenizer, tmp_path):
    long_question = qa("item 1 quantity 2 " * 20, "late answer")
    rows = write_jsonl(tmp_path / "long.jsonl", [qa("item 1", "short"), long_question, qa("x", "y " * 30)])
    cfg = preview_config(data=str(rows), overrides=[*FIXED, "data.validation_split=0", "data.max_length=40"])
    shown = build_preview(cfg, rows=5, tokenizer=tiny_tokenizer)
    assert shown.dropped_lines == [2]  # its answer starts past max_length: training leaves it out
    assert 2 not in [row.line for row in shown.rows]
    cut = next(row for row in shown.rows if row.line == 3)
    assert cut.truncated and len(cut.tokens) == 40 < cut.tokens_before_truncation
    assert shown.truncated_lines == [2, 3] and shown.max_length == 40


def test_grouped_batching_shows_padded_batches(orders, tiny_tokenizer):
    cfg = preview_config(data=str(orders), overrides=[*FIXED, "train.batching=grouped"])
    shown = build_preview(cfg, rows=5, tokenizer=tiny_tokenizer)
    assert shown.batching == "grouped"
    assert [len(sequence) for sequence in shown.sequences()] == [4, 1]
    assert all(not row.tokens[0].trained for row in shown.rows)


def test_a_training_config_sets_template_length_and_packing(orders, tiny_model_dir, tmp_path):
    config = tmp_path / "run.yaml"
    settings = {
        "model": str(tiny_model_dir),
        "data": {"train": orders.name, "max_length": 24, "validation_split": 0},
        "train": {"batch_size": 2, "seed": 5, "max_batch_tokens": 30},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    shown = build_preview(preview_config(config=config), rows=4)  # data.train is relative to the config
    assert (shown.max_length, shown.batch_size, shown.seed, shown.max_batch_tokens) == (24, 2, 5, 30)
    assert all(len(sequence) == 1 for sequence in shown.sequences())  # 2 rows of 24 do not fit 30 tokens
    assert shown.model == str(tiny_model_dir) and shown.train_rows == 16

    other = write_jsonl(tmp_path / "other.jsonl", chat_rows(3))
    assert build_preview(preview_config(config=config, data=str(other)), rows=5).train_rows == 3


def test_bad_inputs_name_the_file_and_line(tiny_tokenizer, tmp_path):
    with pytest.raises(DataFileError, match="missing.jsonl"):
        build_preview(preview_config(data=str(tmp_path / "missing.jsonl")), tokenizer=tiny_tokenizer)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(qa("a", "b")) + "\n" + '{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl.*\n.*line 2"):
        build_preview(preview_config(data=str(bad)), tokenizer=tiny_tokenizer)
    with pytest.raises(ConfigError, match="name a data file"):
        preview_config()
    with pytest.raises(PreviewError, match="task=classification"):
        build_preview(
            preview_config(data=str(bad), overrides=["task=classification"]), tokenizer=tiny_tokenizer
        )


def test_an_unknown_model_is_named(orders):
    from tunery.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="/no/such/model"):
        build_preview(preview_config(data=str(orders), model="/no/such/model"))


def test_the_html_page_escapes_every_row_and_needs_nothing_else(tiny_tokenizer, tmp_path):
    evil = qa('<script>alert("x")</script>', "<img src=x onerror=alert(1)> & done")
    rows = write_jsonl(tmp_path / "evil.jsonl", [evil])
    cfg = preview_config(data=str(rows), overrides=[*FIXED, "data.validation_split=0"])
    page = preview_html(build_preview(cfg, rows=1, tokenizer=tiny_tokenizer), ids=True)
    assert "<script" not in page and "<img" not in page and "&lt;" in page
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<link" not in page and "http" not in page  # self-contained: nothing to fetch
    assert '<span class="t" title="id' in page and '<span class="u" title="id' in page and "<sub>" in page
    fragment = preview_html(build_preview(cfg, rows=1, tokenizer=tiny_tokenizer), page=False)
    assert "<html" not in fragment and 'class="tunery-preview"' in fragment and "<sub>" not in fragment


def test_the_preview_serialises_to_json(orders, tiny_tokenizer):
    data = build_preview(preview_config(data=str(orders), overrides=FIXED), rows=2, tokenizer=tiny_tokenizer)
    shown = json.loads(json.dumps(data.to_dict()))
    row = shown["rows"][0]
    assert set(row["tokens"][0]) == {"id", "text", "trained"}
    assert row["trained_tokens"] == sum(token["trained"] for token in row["tokens"]) > 0
    assert row["truncated"] is False and shown["template_issues"] == []
