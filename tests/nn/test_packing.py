"""Packed rows keep examples apart: each example's loss in a packed row equals its loss alone.

Also the loss the loop logs: the mean per supervised token of the optimiser step,
whatever the micro-batch split (a summed loss once slipped into the log).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tunery.config import load_config
from tunery.data.batching import collate_packed, collate_padded, split_by_tokens
from tunery.data.tokenize import encode_examples
from tunery.data.types import Example, Message
from tunery.nn.loss import causal_lm_parts, mean_loss, summed_loss
from tunery.nn.varlen_attention import register as register_varlen
from tunery.training.recipe import train_step

ANSWERS = [
    '{"name": "Ada", "item": "apple", "quantity": 3}',
    "Paris is the capital of France.",
    "0 1 2",
    "hello",
]


@pytest.fixture(params=["sdpa", "varlen"])
def model(request, tiny_model_dir):
    """SDPA keeps packed examples apart with a block mask; varlen splits the row at the boundaries."""
    attention = "sdpa" if request.param == "sdpa" else register_varlen()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attention)
    return model.eval()


@pytest.fixture
def encoded(tiny_tokenizer):
    examples = [
        Example(i + 1, "chat", (Message("user", f"What is {i} {'fox ' * i}?"), Message("assistant", answer)))
        for i, answer in enumerate(ANSWERS)
    ]
    result = encode_examples(examples, tiny_tokenizer, 256).examples
    assert len({len(e.input_ids) for e in result}) > 1  # lengths differ, or the test proves little
    return result


def token_losses(model, batch) -> torch.Tensor:
    """Loss of every position that predicts a supervised token (IGNORE elsewhere gives 0)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]  # as summed_loss calls it: no KV cache
    targets = batch["labels"][:, 1:]
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")[0]  # [T-1]


@torch.no_grad()
def test_each_examples_loss_in_a_packed_row_equals_its_loss_alone(model, encoded, tiny_tokenizer):
    model = model.double()  # float64: any leak between examples stands far above rounding
    packed = token_losses(model, collate_packed(encoded))
    start = 0
    for example in encoded:
        alone = token_losses(model, collate_padded([example], tiny_tokenizer.pad_token_id)).sum()
        end = start + len(example.input_ids)
        # positions start..end-2 predict this example's tokens 1..n-1; end-1 would predict the next one
        in_row = packed[start : end - 1].sum()
        torch.testing.assert_close(in_row, alone, rtol=1e-10, atol=1e-10)
        start = end


@torch.no_grad()
def test_packed_grouped_and_plain_forward_give_the_same_summed_loss(model, encoded, tiny_tokenizer):
    model = model.double()
    parts = causal_lm_parts(model)
    pad = tiny_tokenizer.pad_token_id
    packed, n_packed = summed_loss(model, collate_packed(encoded), parts)
    padded, n_padded = summed_loss(model, collate_padded(encoded, pad), parts)
    plain, n_plain = summed_loss(model, collate_padded(encoded, pad), None)
    assert n_packed == n_padded == n_plain == sum(e.n_supervised for e in encoded)
    torch.testing.assert_close(packed, padded, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(padded, plain, rtol=1e-10, atol=1e-10)


def test_packed_rows_give_each_example_the_gradient_it_has_alone(model, encoded, tiny_tokenizer):
    model = model.double()
    weight = model.model.layers[0].self_attn.q_proj.weight
    pad, parts = tiny_tokenizer.pad_token_id, causal_lm_parts(model)
    summed = torch.zeros_like(weight)
    for example in encoded:
        loss, _ = summed_loss(model, collate_padded([example], pad), parts)
        summed += torch.autograd.grad(loss, weight)[0]
    loss, _ = summed_loss(model, collate_packed(encoded), parts)
    torch.testing.assert_close(torch.autograd.grad(loss, weight)[0], summed, rtol=1e-9, atol=1e-12)


@torch.no_grad()
def test_a_segment_that_shares_the_prompt_before_it_sees_what_the_whole_sequence_sees(tiny_model_dir):
    """Row [p + a, b] with prefix_lengths [0, len(p)]: b's logits are those of p + b alone."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=register_varlen())
    model = model.double().eval()
    prompt, a, b = list(range(5, 17)), [40, 41, 42], [50, 51, 52, 53, 54]
    row = torch.tensor([prompt + a + b])
    positions = torch.tensor([list(range(len(prompt + a))) + list(range(len(prompt), len(prompt + b)))])
    bounds = torch.tensor([0, len(prompt + a), len(prompt + a + b)], dtype=torch.int32)
    packed = {"input_ids": row, "position_ids": positions, "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds}
    prefixes = torch.tensor([0, len(prompt)], dtype=torch.int32)
    shared = model(**packed, prefix_lengths=prefixes, use_cache=False).logits[0]
    alone_a = model(input_ids=torch.tensor([prompt + a])).logits[0]
    alone_b = model(input_ids=torch.tensor([prompt + b])).logits[0]
    torch.testing.assert_close(shared[: len(prompt + a)], alone_a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(shared[len(prompt + a) :], alone_b[len(prompt) :], rtol=1e-10, atol=1e-10)
    unshared = model(**packed, use_cache=False).logits[0]
    assert not torch.allclose(
        unshared[len(prompt + a) :], alone_b[len(prompt) :]
    )  # the prefix is what matters


def test_varlen_attention_passes_padded_batches_to_sdpa_with_their_mask(
    tiny_model_dir, encoded, tiny_tokenizer
):
    torch.manual_seed(0)
    sdpa = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").double().eval()
    varlen = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=register_varlen())
    varlen = varlen.double().eval()
    batch = collate_padded(encoded, tiny_tokenizer.pad_token_id)
    del batch["labels"]
    with torch.no_grad():
        expected, got = sdpa(**batch).logits, varlen(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], rtol=1e-10, atol=1e-10)


def test_the_frozen_head_loss_gives_the_gradients_of_the_plain_loss(model, encoded, tiny_tokenizer):
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layer = model.model.layers[0].mlp.up_proj.weight
    layer.requires_grad_(True)  # a trainable body weight, a frozen (tied) head: the LoRA situation
    batch = collate_padded(encoded, tiny_tokenizer.pad_token_id)
    grads = []
    for parts in (causal_lm_parts(model), None):
        loss, n = summed_loss(model, batch, parts)
        (loss / n).backward()
        grads.append(layer.grad.clone())
        layer.grad = None
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("max_batch_tokens", [None, 40])  # 40: the batch runs in several passes
@pytest.mark.parametrize("batching", ["grouped", "packed"])
def test_the_step_loss_is_the_mean_per_supervised_token_of_the_whole_step(
    model, encoded, tiny_tokenizer, tiny_model_dir, batching, max_batch_tokens
):
    train = {"batching": batching, "max_batch_tokens": max_batch_tokens}
    cfg = load_config({"data": {"train": "unused.jsonl"}, "train": train})
    pad = tiny_tokenizer.pad_token_id
    expected = mean_loss(model, None, encoded, pad, batch_size=len(encoded))
    micro_batches = [encoded[:1], encoded[1:]]  # uneven split: a mean of means would differ
    loss, n_tokens = train_step(model, causal_lm_parts(model), micro_batches, cfg, "cpu", pad, step=0)
    assert n_tokens == sum(e.n_supervised for e in encoded)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert 0 < loss < 2 * torch.log(torch.tensor(float(len(tiny_tokenizer)))).item()  # a mean, not a sum


def test_a_batch_splits_into_pieces_within_the_token_budget(encoded):
    for strategy in ("grouped", "packed"):
        pieces = split_by_tokens(encoded, 50, strategy)
        assert [e for piece in pieces for e in piece] == encoded
        for piece in pieces:
            lengths = [len(e.input_ids) for e in piece]
            size = sum(lengths) if strategy == "packed" else len(piece) * max(lengths)
            assert size <= 50 or len(piece) == 1
    assert split_by_tokens(encoded, None, "grouped") == [encoded]
