"""The template round-trip: the prompt a model gets at inference must be an exact token prefix of
what it was trained on, and each trained turn must end with the template's end-of-turn token.

Broken templates here are ChatML with one thing changed in the generation prompt or the turn's
end; the tiny byte-level BPE tokenizer of tests/conftest.py tokenises them. The bundled model's
real template (SmolLM2, slow: its tokenizer takes seconds to load) must pass.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tunery
from tests.conftest import CHATML, build_tiny_llama, build_tiny_tokenizer, chat_rows, write_jsonl
from tests.data.conftest import qa
from tunery.data import load_examples
from tunery.data.prepare import prepare_data
from tunery.data.template_check import (
    TemplateIssue,
    check_round_trip,
    check_round_trip_cached,
    end_of_turn_id,
    report_template_issues,
)
from tunery.data.tokenize import CHATML_TEMPLATE, IGNORE, TemplateError, encode_all
from tunery.run import Run

GENERATION_PROMPT = "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"


def chatml_with_generation_prompt(prompt: str) -> str:
    """ChatML whose generation prompt is `prompt` (a Jinja expression) instead of '<|im_start|>assistant\\n'."""
    assert GENERATION_PROMPT in CHATML
    return CHATML.replace(GENERATION_PROMPT, "{% if add_generation_prompt %}{{ " + prompt + " }}{% endif %}")


@pytest.fixture
def tokenizer():
    """A fresh tiny tokenizer per test: the tests change its chat template."""
    return build_tiny_tokenizer()


@pytest.fixture
def orders(tmp_path) -> Path:
    """Three rows; row 2 opens with a system message, row 3 has two assistant turns."""
    two_turns = qa("item 1 quantity 2", '{"item": 1, "quantity": 2}')
    two_turns["messages"] += [
        {"role": "user", "content": "item 3 quantity 4"},
        {"role": "assistant", "content": '{"item": 3, "quantity": 4}'},
    ]
    system = qa("item 5 quantity 6", '{"item": 5, "quantity": 6}')
    system["messages"].insert(0, {"role": "system", "content": "Extract the order as JSON."})
    return write_jsonl(tmp_path / "orders.jsonl", [qa("hello", "world"), system, two_turns])


def test_chatml_round_trips_on_every_turn(tokenizer, orders):
    assert check_round_trip(load_examples(orders).examples, tokenizer) == []


def test_the_chatml_fallback_of_template_less_models_round_trips(tokenizer, orders):
    tokenizer.chat_template = CHATML_TEMPLATE
    assert check_round_trip(load_examples(orders).examples, tokenizer) == []


def test_a_generation_prompt_with_an_extra_space_is_caught_with_line_and_token(tokenizer, orders):
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assistant \n'")
    issues = check_round_trip(load_examples(orders).examples, tokenizer)
    assert [(issue.line, issue.turn) for issue in issues] == [(1, 1), (2, 2), (3, 1), (3, 3)]
    first = issues[0]
    assert first.kind == "prompt"
    assert (first.expected, first.found) == (" ", "\n")  # inference has the space, training the newline
    prompt_ids = tokenizer(first.prompt_text, add_special_tokens=False)["input_ids"]
    training_ids = tokenizer(first.training_text, add_special_tokens=False)["input_ids"]
    assert prompt_ids[: first.position] == training_ids[: first.position]
    assert prompt_ids[first.position] == first.expected_id != training_ids[first.position] == first.found_id
    assert first.training_text.startswith(first.prompt_text.removesuffix(" \n"))
    assert first.message.startswith("line 1, message 2 (assistant): the inference prompt is not a prefix")
    assert "' ' (id" in first.message and "'\\n' (id" in first.message
    assert "<|im_start|>assistant \\n" in first.message and "<|im_start|>assistant\\nworld" in first.message


def test_a_different_header_only_for_some_rows_names_only_those_lines(tokenizer, orders):
    # The generation prompt says 'bot' after a system message: only row 2 has one.
    tokenizer.chat_template = chatml_with_generation_prompt(
        "'<|im_start|>' + ('bot' if messages[0]['role'] == 'system' else 'assistant') + '\n'"
    )
    issues = check_round_trip(load_examples(orders).examples, tokenizer)
    assert [(issue.line, issue.kind) for issue in issues] == [(2, "prompt")]
    assert issues[0].expected != issues[0].found


def test_every_assistant_turn_of_a_multi_turn_row_is_checked(tokenizer, orders):
    # Broken only once the conversation has more than two messages: the second turn of row 3.
    tokenizer.chat_template = chatml_with_generation_prompt(
        "'<|im_start|>assistant' + (' ' if messages | length > 2 else '') + '\n'"
    )
    issues = check_round_trip(load_examples(orders).examples, tokenizer)
    assert [(issue.line, issue.turn) for issue in issues] == [(3, 3)]


def test_tokens_can_differ_where_the_texts_agree(tokenizer, orders):
    """A prompt cut inside a word is a prefix of the training text, not of its tokens:
    'assist' becomes [as, sis, t] alone but [as, sis, tant] inside 'assistant'."""
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assist'")
    examples = load_examples(orders).examples
    encode_all(examples, tokenizer, max_length=1024)  # training's own text check lets it through
    issues = check_round_trip(examples, tokenizer)
    assert len(issues) == 4
    assert (issues[0].expected, issues[0].found) == ("t", "tant")
    assert issues[0].training_text.startswith(issues[0].prompt_text)


def test_a_turn_that_does_not_end_with_the_end_of_turn_token_is_caught(tokenizer, orders):
    tokenizer.chat_template = CHATML.replace("'<|im_end|>' + '\n'", "'\n'")  # no <|im_end|> anywhere
    issues = check_round_trip(load_examples(orders).examples, tokenizer)
    assert {issue.kind for issue in issues} == {"end"} and len(issues) == 4
    assert issues[0].expected is None
    assert "writes no end-of-turn token" in issues[0].message


def test_an_answer_closed_by_another_token_than_the_end_of_turn_is_caught(tokenizer, orders):
    # Turns end with <|im_end|>, except an assistant turn of row 3 that ends with <|endoftext|>.
    tokenizer.chat_template = CHATML.replace(
        "'<|im_end|>' + '\n'",
        "('<|endoftext|>' if message['content'].startswith('{\"item\": 3') else '<|im_end|>') + '\n'",
    )
    issues = check_round_trip(load_examples(orders).examples, tokenizer)
    assert [(issue.line, issue.turn, issue.kind) for issue in issues] == [(3, 3, "end")]
    assert (issues[0].expected, issues[0].found) == ("<|im_end|>", "<|endoftext|>")


def test_the_end_of_turn_token_is_read_from_the_template(tokenizer):
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    tokenizer.chat_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|eot_id|>")


def test_rows_without_a_template_are_not_checked(tokenizer, tmp_path):
    completions = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "a", "completion": "b"}])
    tokenizer.chat_template = chatml_with_generation_prompt("'broken'")
    assert check_round_trip(load_examples(completions).examples, tokenizer) == []


def test_the_cached_check_reads_the_answer_from_disk_and_notices_a_new_template(
    tokenizer, orders, tmp_path, monkeypatch
):
    examples = load_examples(orders).examples
    assert check_round_trip_cached(examples, tokenizer, cache_dir=tmp_path / "cache") == []

    def not_again(*args):
        raise AssertionError("checked again instead of reading the cache")

    monkeypatch.setattr("tunery.data.template_check.check_round_trip", not_again)
    assert check_round_trip_cached(examples, tokenizer, cache_dir=tmp_path / "cache") == []
    monkeypatch.undo()
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assistant \n'")
    issues = check_round_trip_cached(examples, tokenizer, cache_dir=tmp_path / "cache")
    assert len(issues) == 4 and all(isinstance(issue, TemplateIssue) for issue in issues)
    assert check_round_trip_cached(examples, tokenizer, cache_dir=tmp_path / "cache") == issues


def test_issues_warn_by_default_and_stop_when_strict(tokenizer, orders, caplog):
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assistant \n'")
    issues = check_round_trip(load_examples(orders).examples, tokenizer)
    with caplog.at_level(logging.WARNING, logger="tunery.data"):
        report_template_issues(issues, strict=False, source="orders.jsonl")
    assert "orders.jsonl: the chat template's inference prompt does not round-trip on 3 row(s)" in caplog.text
    assert "(lines 1, 2, 3)" in caplog.text
    with pytest.raises(TemplateError, match="line 1, message 2") as refused:
        report_template_issues(issues, strict=True)
    assert "data.strict_template" in str(refused.value)
    report_template_issues([], strict=True)  # nothing to report: nothing happens


def test_prepare_data_records_the_issues_and_strict_stops_it(tokenizer, tmp_path):
    from tunery.config import load_config

    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assist'")  # trains, but skewed
    cfg = load_config({"data": {"train": str(train), "validation_split": 0.25}})
    prepared = prepare_data(cfg.data, tokenizer, seed=1)
    assert {issue.line for issue in prepared.template_issues} == set(range(1, 9))  # train and held-out
    assert prepared.summary()["template_issue_lines"] == list(range(1, 9))
    cfg.data.strict_template = True
    with pytest.raises(TemplateError, match=r"(?s)train\.jsonl: .*line \d, message 2"):
        prepare_data(cfg.data, tokenizer, seed=1)


def test_a_template_training_cannot_mask_fails_naming_the_row_and_token(tokenizer, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assistant \n'")
    from tunery.config import load_config

    cfg = load_config({"data": {"train": str(train), "validation_split": 0}})
    with pytest.raises(TemplateError, match=r"line 1, message 2 \(assistant\).*' ' \(id \d+\) at inference"):
        prepare_data(cfg.data, tokenizer, seed=1)


def test_a_strict_training_start_stops_before_the_first_step(tmp_path):
    model_dir = tmp_path / "skewed-model"
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = chatml_with_generation_prompt("'<|im_start|>assist'")
    build_tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    config = {
        "model": str(model_dir),
        "data": {"train": str(train), "validation_split": 0, "max_length": 64, "strict_template": True},
        "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "epochs": 1},
        "output_dir": str(tmp_path / "runs"),
        "run_name": "strict",
    }
    with pytest.raises(TemplateError, match="line 1, message 2"):
        tunery.train(config, quiet=True)
    run = Run.open(tmp_path / "runs" / "strict")
    assert run.record["status"] == "failed" and "TemplateError" in run.record["error"]
    assert run.history() == []  # not one step

    config["data"]["strict_template"] = False
    config["run_name"] = "warned"
    warned = tunery.train(config, quiet=True)
    (warning,) = [w for w in warned.record["warnings"] if w["kind"] == "template"]
    assert "line 1, message 2" in warning["message"]
    assert warned.record["data"]["template_issue_lines"] == list(range(1, 9))


@pytest.mark.slow
def test_the_bundled_smollm2_template_round_trips_and_a_broken_copy_does_not(tmp_path):
    from tunery.models import load_tokenizer, resolve_model

    examples = Path(__file__).parents[2] / "examples" / "data"
    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    assert tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer)) == "<|im_end|>"
    rows = [
        *load_examples(examples / "train.jsonl").examples,
        *load_examples(examples / "valid.jsonl").examples,
    ]
    assert any(sum(m.role == "assistant" for m in row.messages) > 1 for row in rows)  # multi-turn ones too
    assert check_round_trip(rows, tokenizer) == []

    # The same template with a space after the assistant header, in the generation prompt too: a prefix of
    # the text but not of its tokens (SmolLM2 merges the prompt's last "\\n " into one token; training has
    # "\\n" then " {"), the classic train/serve skew.
    real = tokenizer.chat_template
    tokenizer.chat_template = real.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\n '")
    assert tokenizer.chat_template != real
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "'<|im_start|>' + message['role'] + '\n' + message['content']",
        "'<|im_start|>' + message['role'] + '\n' + (' ' if message['role'] == 'assistant' else '') + "
        "message['content']",
    )
    skewed = check_round_trip(rows[:3], tokenizer)
    assert sorted({issue.line for issue in skewed}) == [1, 2, 3]
    assert skewed[0].kind == "prompt" and (skewed[0].expected, skewed[0].found) == ("\n ", "\n")
    labels = encode_all(rows[:1], tokenizer, 1024)[0].labels
    assert any(label != IGNORE for label in labels)  # training would have run on it without a word
