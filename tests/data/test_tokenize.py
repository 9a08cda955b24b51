"""Which tokens carry loss: only the assistant's answers (every turn), unless train_on=all."""

from __future__ import annotations

import pytest

from tunery.data.tokenize import IGNORE, TemplateError, encode_examples, token_counter
from tunery.data.types import Example, Message


def chat(*turns: tuple[str, str], line: int = 1) -> Example:
    return Example(line=line, kind="chat", messages=tuple(Message(role, text) for role, text in turns))


def supervised_text(tokenizer, encoded) -> str:
    return tokenizer.decode(
        [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    )


def test_single_turn_chat_trains_on_the_answer_and_its_end_token(tiny_tokenizer):
    data = encode_examples([chat(("user", "hello"), ("assistant", "world"))], tiny_tokenizer, max_length=64)
    (encoded,) = data.examples
    assert supervised_text(tiny_tokenizer, encoded) == "world<|im_end|>\n"
    assert tiny_tokenizer.decode(encoded.input_ids) == (
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nworld<|im_end|>\n"
    )


def test_every_assistant_turn_of_a_multi_turn_chat_is_supervised(tiny_tokenizer):
    example = chat(
        ("system", "be brief"), ("user", "1"), ("assistant", "one"), ("user", "2"), ("assistant", "two")
    )
    (encoded,) = encode_examples([example], tiny_tokenizer, max_length=128).examples
    assert supervised_text(tiny_tokenizer, encoded) == "one<|im_end|>\ntwo<|im_end|>\n"
    # Exactly the mask: labels equal ids where supervised, IGNORE elsewhere.
    positions = [i for i, label in enumerate(encoded.labels) if label != IGNORE]
    assert all(encoded.labels[i] == encoded.input_ids[i] for i in positions)
    assert positions == sorted(positions) and len(positions) < len(encoded.input_ids)


def test_train_on_all_supervises_every_token(tiny_tokenizer):
    (encoded,) = encode_examples(
        [chat(("user", "hello"), ("assistant", "world"))], tiny_tokenizer, max_length=64, train_on="all"
    ).examples
    assert encoded.labels == encoded.input_ids


def test_completion_trains_on_completion_and_eos(tiny_tokenizer):
    example = Example(line=3, kind="completion", prompt="The quick brown", completion=" fox")
    (encoded,) = encode_examples([example], tiny_tokenizer, max_length=64).examples
    assert supervised_text(tiny_tokenizer, encoded) == " fox<|im_end|>"


def test_plain_text_trains_on_everything(tiny_tokenizer):
    (encoded,) = encode_examples(
        [Example(line=1, kind="text", text="hello world")], tiny_tokenizer, 64
    ).examples
    assert encoded.labels == encoded.input_ids


def test_truncation_that_leaves_no_answer_drops_the_example_and_says_which_line(tiny_tokenizer):
    long_prompt = "the quick brown fox " * 20
    examples = [
        chat(("user", "hi"), ("assistant", "ok"), line=1),
        chat(("user", long_prompt), ("assistant", "ok"), line=2),
    ]
    data = encode_examples(examples, tiny_tokenizer, max_length=16)
    assert [e.line for e in data.examples] == [1]
    assert data.dropped_lines == [2]
    assert data.truncated_lines == [2]
    assert all(len(e.input_ids) <= 16 for e in data.examples)


def test_token_counter_reports_totals_before_and_supervision_after_truncation(tiny_tokenizer):
    count = token_counter(tiny_tokenizer, max_length=16)
    long_answer = chat(("user", "hi"), ("assistant", "the quick brown fox " * 10))
    counts = count(long_answer)
    assert counts.total > 16
    assert 0 < counts.supervised_kept < counts.supervised


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # Like templates that strip reasoning from earlier turns: the last assistant turn renders differently.
    tokenizer.chat_template = (
        "{% for m in messages %}{% if loop.last %}{{ m['role'] + ': ' + m['content'] + '\n' }}"
        "{% else %}{{ m['role'] + '> ' + m['content'] + '\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(
        TemplateError, match="line 1: the model's chat template renders earlier turns differently"
    ):
        encode_examples(
            [chat(("user", "hi"), ("assistant", "ok"), ("user", "again"), ("assistant", "ok"))], tokenizer, 64
        )
