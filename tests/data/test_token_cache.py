"""The tokenisation cache: a second encode comes from disk; any change to data, template or tokenizer misses."""

from __future__ import annotations

import copy

import pytest

from tunery.data.tokenize import encode_examples, encode_examples_cached
from tunery.data.types import Example, Message


def chat(line: int, answer: str) -> Example:
    return Example(line, "chat", (Message("user", f"Order {line}, please."), Message("assistant", answer)))


@pytest.fixture
def examples() -> list[Example]:
    return [chat(1, '{"item": "apple"}'), chat(2, '{"item": "fox", "quantity": 3}')]


def cached_files(folder):
    return sorted(path.name for path in folder.glob("*.json"))


def test_a_second_encode_reads_the_cache_and_matches_a_fresh_encode(examples, tiny_tokenizer, tmp_path):
    first = encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path)
    assert len(cached_files(tmp_path)) == 1
    second = encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path)
    fresh = encode_examples(examples, tiny_tokenizer, 64, "assistant")
    assert second == first == fresh
    assert len(cached_files(tmp_path)) == 1


def test_the_cache_is_what_the_second_call_returns(examples, tiny_tokenizer, tmp_path, monkeypatch):
    encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path)
    monkeypatch.setattr("tunery.data.tokenize.encode_examples", lambda *a, **k: pytest.fail("re-encoded"))
    assert encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path).examples


def test_changing_data_template_tokenizer_or_settings_invalidates_the_cache(
    examples, tiny_tokenizer, tmp_path
):
    encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path)

    changed_data = [examples[0], chat(2, '{"item": "dog", "quantity": 3}')]
    other_template = copy.deepcopy(tiny_tokenizer)
    other_template.chat_template = tiny_tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    other_tokenizer = copy.deepcopy(tiny_tokenizer)
    other_tokenizer.add_tokens(["apple"])  # same template, different vocabulary

    variants = [
        (changed_data, tiny_tokenizer, 64, "assistant"),
        (examples, other_template, 64, "assistant"),
        (examples, other_tokenizer, 64, "assistant"),
        (examples, tiny_tokenizer, 32, "assistant"),
        (examples, tiny_tokenizer, 64, "all"),
    ]
    for count, (data, tokenizer, max_length, train_on) in enumerate(variants, start=2):
        result = encode_examples_cached(data, tokenizer, max_length, train_on, cache_dir=tmp_path)
        assert result == encode_examples(data, tokenizer, max_length, train_on)
        assert len(cached_files(tmp_path)) == count  # a miss: a new entry, not the old one


def test_a_damaged_cache_entry_is_encoded_again(examples, tiny_tokenizer, tmp_path):
    encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json", encoding="utf-8")
    result = encode_examples_cached(examples, tiny_tokenizer, 64, "assistant", cache_dir=tmp_path)
    assert result == encode_examples(examples, tiny_tokenizer, 64, "assistant")
