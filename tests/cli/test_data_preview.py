"""`tunery data preview` and the round-trip part of `tunery data check --model`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.cli.test_cli import single_line, tunery
from tests.conftest import CHATML, build_tiny_llama, build_tiny_tokenizer, chat_rows, write_jsonl
from tunery.cli import app

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def data(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["data", *args], env=ENV)
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


@pytest.fixture
def orders(tmp_path) -> Path:
    return write_jsonl(tmp_path / "orders.jsonl", chat_rows(10))


def tiny_model_with_generation_prompt(folder: Path, prompt: str) -> Path:
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = CHATML.replace("'<|im_start|>assistant\n'", prompt)
    assert tokenizer.chat_template != CHATML
    build_tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def skewed_model(tmp_path_factory) -> Path:
    """A tiny model whose generation prompt has a space that training's turns do not: the text of
    the prompt is not a prefix of the training text, so training cannot even find the answers."""
    return tiny_model_with_generation_prompt(tmp_path_factory.mktemp("skewed"), "'<|im_start|>assistant \n'")


@pytest.fixture(scope="module")
def cut_model(tmp_path_factory) -> Path:
    """A tiny model whose generation prompt stops inside a word: a prefix of the text, not of the tokens,
    so training runs, on a prompt inference never gives."""
    return tiny_model_with_generation_prompt(tmp_path_factory.mktemp("cut"), "'<|im_start|>assist'")


def test_preview_shows_the_rows_with_trained_tokens_and_ids(orders, tiny_model_dir, tmp_path):
    page = tmp_path / "preview.html"
    shown = data(
        "preview", str(orders), "--model", str(tiny_model_dir), "--rows", "2", "--ids", "--html", str(page),
        "--set", "train.batch_size=4",
    )  # fmt: skip
    assert "max_length 1024, train_on assistant, batching packed, batch_size 4" in shown
    assert "the first 2 of 9 training rows" in shown  # one of 10 held out, as training holds it out
    assert shown.count("line ") >= 2 and "packed sequence 1: lines " in shown
    assert "<|im_start|>[1]" in shown  # --ids: each token followed by its id
    assert f"wrote {page}" in shown
    html = page.read_text(encoding="utf-8")
    assert (
        html.startswith("<!DOCTYPE html>") and html.count('class="rowhead"') == 2 and "<sub>1</sub>" in html
    )


def test_preview_follows_a_training_config(orders, tiny_model_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({
            "model": str(tiny_model_dir),
            "data": {"train": orders.name, "max_length": 20, "validation_split": 0},
            "train": {"batch_size": 2, "seed": 9, "batching": "grouped"},
        }),
        encoding="utf-8",
    )  # fmt: skip
    shown = data("preview", "--config", str(config), "--rows", "3")
    assert "max_length 20, train_on assistant, batching grouped, batch_size 2" in shown and "seed 9" in shown
    assert "padded batch 1: lines" in shown and "padded batch 2: lines" in shown
    assert "truncated from" in shown
    assert "max_length 18," in data("preview", "--config", str(config), "--max-length", "18")


def test_preview_shows_the_template_round_trip_issues(orders, cut_model, skewed_model):
    shown = data("preview", str(orders), "--model", str(cut_model), "--rows", "1")
    assert "does not round-trip on 10 row(s)" in single_line(shown)  # train and held-out rows
    assert "line 1, message 2 (assistant): the inference prompt is not a prefix" in shown
    assert "token 12 is 't' (id 86) at inference but 'tant' (id 328) in training" in shown
    assert "packed sequence 1: lines" in shown  # and the rows, since training would run

    refused = CliRunner().invoke(app, ["data", "preview", str(orders), "--model", str(skewed_model)], env=ENV)
    assert "cannot be located" in str(refused.exception) and "line 1, message 2" in str(refused.exception)


def test_check_with_a_model_reports_each_broken_row_and_strict_fails(orders, cut_model, tiny_model_dir):
    ok = data("check", str(orders), "--model", str(tiny_model_dir))
    assert "template round-trip: every assistant turn's inference prompt is a prefix" in single_line(ok)
    warned = data("check", str(orders), "--model", str(cut_model))  # a warning: exit 0
    assert f"{orders}: the chat template's inference prompt does not round-trip on 10 row(s)" in single_line(
        warned
    )
    assert "(lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)" in single_line(warned)
    assert "line 5, message 2 (assistant)" in warned and "... and 5 more" in warned  # five spelled out
    data("check", str(orders), "--model", str(cut_model), "--strict-template", code=1)
    report = json.loads(data("check", str(orders), "--model", str(cut_model), "--json"))
    issue = report["template_issues"][0]
    assert (issue["line"], issue["turn"], issue["kind"], issue["expected"], issue["found"]) == (
        1, 1, "prompt", "t", "tant",
    )  # fmt: skip
    assert issue["prompt_text"].endswith("<|im_start|>assist") and "message" in issue
    assert "template_issues" not in json.loads(data("check", str(orders), "--json"))  # no model: not checked


def test_check_of_a_template_training_cannot_mask_names_row_and_token(orders, skewed_model):
    refused = tunery("data", "check", str(orders), "--model", str(skewed_model))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = single_line(refused.stderr)
    assert message.startswith("error: line 1: the model's chat template renders earlier turns differently")
    assert (
        "line 1, message 2 (assistant): the inference prompt is not a prefix of the training tokens"
        in message
    )
    assert "is ' ' (id 223) at inference but '\\n' (id 201) in training" in message


def test_bad_input_ends_in_one_clear_line(orders, tiny_model_dir, tmp_path):
    missing = tunery("data", "preview", str(tmp_path / "nope.jsonl"), "--model", str(tiny_model_dir))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert single_line(missing.stderr).startswith(f"error: {tmp_path / 'nope.jsonl'}")
    bad_row = write_jsonl(
        tmp_path / "bad.jsonl", [*chat_rows(2), {"messages": [{"role": "user", "content": "?"}]}]
    )
    refused = tunery("data", "preview", str(bad_row), "--model", str(tiny_model_dir))
    assert refused.returncode == 2 and f"error: {bad_row}: 1 row(s) cannot be used: line 3" in single_line(
        refused.stderr
    )
    unknown = tunery("data", "preview", str(orders), "--model", "/no/such/model")
    assert unknown.returncode == 2
    assert single_line(unknown.stderr) == "error: model path /no/such/model does not exist"
    neither = tunery("data", "preview")
    assert neither.returncode == 2 and "name a data file, or a training config (--config)" in neither.stderr
