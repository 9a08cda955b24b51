"""The FLOP count behind the bench's HFU, checked against SmolLM2-135M worked out by hand.

SmolLM2-135M: hidden 576, 30 layers, 9 heads of 64, 3 KV heads (KV width 192), MLP 1536,
vocab 49,152 (docs/benchmarks.md shows the same arithmetic).

Weights per layer: q 576·576 = 331,776; k and v 576·192 = 110,592 each; o 331,776;
gate, up and down 576·1536 = 884,736 each; together 3,538,944, so 106,168,320 in 30 layers,
and the head 576·49,152 = 28,311,552.
"""

from __future__ import annotations

import pytest

from tunery.training.flops import (
    Decoder,
    StepSetup,
    Work,
    causal_pairs,
    masked_rows,
    mfu_per_supervised_token,
    per_example,
    per_position,
    training_flops,
    utilisation,
    weighted_gemm_rate,
)

SMOLLM2 = Decoder(hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, intermediate=1536, vocab=49152)

# Per position, by hand:
BODY_FORWARD = 2 * 106_168_320  # 212,336,640
BODY_INPUT_GRAD = BODY_FORWARD - 2 * (331_776 + 110_592 + 110_592)  # layer 0's q/k/v read frozen embeddings
# r=16: r·(in+out) per layer = 16·(1152 + 768 + 768 + 1152 + 3·2112) = 162,816; 30 layers: 4,884,480;
# 6 products' worth, less layer 0's q/k/v input gradient 2·16·576·3 = 55,296.
LORA_16 = 6 * 4_884_480 - 55_296  # 29,251,584
HEAD = 2 * 2 * 28_311_552  # forward and input gradient: 113,246,208 per position
ATTENTION_PER_PAIR = 7 * 2 * 64 * 9 * 30  # 241,920: seven products of head_dim·heads per pair, 30 layers


def test_smollm2_shapes_match_the_hand_count():
    assert SMOLLM2.matmul_params() == 106_168_320 + 28_311_552
    assert SMOLLM2.gemm_shapes() == {(576, 576): 60, (576, 192): 60, (576, 1536): 60, (1536, 576): 30,
                                     (576, 49152): 1}  # fmt: skip


def test_a_position_costs_the_body_both_ways_and_lora_six_products():
    assert per_position(SMOLLM2, StepSetup(lora_rank=16)) == (BODY_FORWARD + BODY_INPUT_GRAD, LORA_16)
    assert BODY_FORWARD + BODY_INPUT_GRAD == 423_567_360
    assert per_position(SMOLLM2, StepSetup(lora_rank=0)) == (423_567_360, 0)


def test_tunery_step_on_a_packed_row_of_two_examples():
    """Lengths 300 and 100 in one packed row, 150 supervised positions, per-example attention."""
    work = per_example([300, 100], head_positions=150)
    assert work == Work(tokens=400, attention_pairs=300 * 301 // 2 + 100 * 101 // 2, head_positions=150)
    flops = training_flops(SMOLLM2, work, StepSetup(lora_rank=16))
    assert flops.body == 400 * 423_567_360 == 169_426_944_000
    assert flops.lora == 400 * 29_251_584 == 11_700_633_600
    assert flops.attention == 50_200 * ATTENTION_PER_PAIR == 12_144_384_000
    assert flops.head == 150 * HEAD == 16_986_931_200
    assert flops.total == 210_258_892_800


def test_the_same_row_under_a_block_diagonal_mask_with_a_full_chunked_head():
    """TRL's padding-free row on a CPU: SDPA scores all 400² pairs; its chunked head runs on every
    position but the last and recomputes the logits in backward (three products)."""
    work = masked_rows(rows=1, width=400, head_positions=399)
    flops = training_flops(SMOLLM2, work, StepSetup(lora_rank=16, recompute_head=True))
    assert flops.attention == 160_000 * ATTENTION_PER_PAIR == 38_707_200_000
    assert flops.head == 399 * 3 * 2 * 28_311_552 == 67_777_855_488
    assert flops.body == 169_426_944_000, "the body's work does not depend on the attention"


def test_gradient_checkpointing_recomputes_the_forward_and_input_grads_reach_layer_zero():
    setup = StepSetup(lora_rank=16, embedding_grad=True, recompute_body=True)
    body, lora = per_position(SMOLLM2, setup)
    assert body == 3 * BODY_FORWARD  # forward twice, and the full input gradient
    assert lora == 6 * 4_884_480 + 2 * 4_884_480  # the six products, plus the two forward ones again
    attention = training_flops(SMOLLM2, Work(attention_pairs=1), setup).attention
    assert attention == 9 * 2 * 64 * 9 * 30


def test_lora_work_grows_with_the_rank_and_attention_with_the_square_of_the_length():
    _, lora_8 = per_position(SMOLLM2, StepSetup(lora_rank=8))
    _, lora_64 = per_position(SMOLLM2, StepSetup(lora_rank=64))
    assert lora_64 == 8 * lora_8
    assert (causal_pairs(1024), causal_pairs(4096)) == (524_800, 8_390_656)  # 4x the length, ~16x the pairs


def test_mfu_per_supervised_token_counts_four_times_the_matmul_weights():
    assert mfu_per_supervised_token(100.0, SMOLLM2, 1e12) == pytest.approx(100 * 4 * 134_479_872 / 1e12)


def test_the_gemm_rate_weighs_each_shape_by_its_count():
    slow_head = {shape: 1e-3 for shape in SMOLLM2.gemm_shapes()} | {(576, 49152): 1.0}
    rate = weighted_gemm_rate(SMOLLM2, tokens=1000, seconds=slow_head)
    flops = 2 * 1000 * 134_479_872
    assert rate == pytest.approx(flops / (60e-3 * 3 + 30e-3 + 1.0))


def test_utilisation_is_flops_over_time_over_the_rate():
    assert utilisation(5e11, 2.0, 1e12) == 0.25


@pytest.mark.slow
def test_the_bundled_smollm2_config_has_the_hand_counted_shapes():
    from transformers import AutoConfig

    from tunery.models import resolve_model

    assert Decoder.from_config(AutoConfig.from_pretrained(resolve_model("smollm2-135m-instruct"))) == SMOLLM2
