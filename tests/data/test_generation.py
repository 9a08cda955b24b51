"""The one generate loop: batched, left padded, only new tokens back; chat, eval and rewriters use it."""

from __future__ import annotations

import pytest

from tunery.data import generation
from tunery.data.generation import generate_texts, generate_tokens, load_rewriter

PROMPTS = ["hello", "The quick brown fox jumps over the lazy dog.", "What is the capital of France?"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tunery.models import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), load_tokenizer(str(tiny_model_dir))


def test_a_batch_answers_each_prompt_as_it_would_be_answered_alone(tiny):
    model, tokenizer = tiny
    batched = generate_texts(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3)
    alone = [generate_texts(model, tokenizer, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert batched == alone
    assert tokenizer.padding_side == "left"


def test_only_the_new_tokens_come_back(tiny):
    import torch

    model, tokenizer = tiny
    ids = torch.tensor([tokenizer("hello world", add_special_tokens=False)["input_ids"]])
    new = generate_tokens(
        model, ids, torch.ones_like(ids), max_new_tokens=5, pad_token_id=tokenizer.pad_token_id
    )
    full = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    assert new.shape[0] == 1 and 0 < new.shape[1] <= 5
    assert new.tolist() == full[:, ids.shape[1] :].tolist()


def test_sampling_repeats_with_the_same_seed(tiny):
    import torch

    model, tokenizer = tiny
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(generate_texts(model, tokenizer, PROMPTS, 8, sampling={"temperature": 1.5, "top_p": 0.9}))
    assert runs[0] == runs[1]


def test_chat_eval_and_the_rewriters_go_through_the_one_loop(tiny, tiny_model_dir, monkeypatch):
    from tunery.inference import generate

    calls = []
    real = generation.generate_tokens

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_tokens", counted)
    model, tokenizer = tiny
    generate(model, tokenizer, [[{"role": "user", "content": "hello"}]], max_new_tokens=4)
    assert calls[-1]["eos_token_id"] == tokenizer.eos_token_id
    load_rewriter(str(tiny_model_dir), max_new_tokens=4)(["Where is the station?", "hi"])
    assert len(calls) == 2
