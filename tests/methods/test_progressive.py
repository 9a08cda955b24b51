"""Progressive unfreezing: which layer groups train at each step of the schedule, and their learning rates."""

from __future__ import annotations

import pytest

from tests.conftest import build_tiny_llama
from tunery.config import load_config
from tunery.methods import get_method


def options(**freeze):
    """progressive's own options, built from a config as the recipe builds them."""
    cfg = load_config(
        {"data": {"train": "x"}, "method": "progressive", "freeze": freeze, "train": {"lr": 1e-3}}
    )
    return get_method("progressive").options(cfg)


def apply(progressive, model, cfg):
    return progressive.apply(model, cfg, task_type="CAUSAL_LM", total_steps=10)


def trainable_layers(model) -> set[int]:
    return {int(n.split(".")[2]) for n, p in model.named_parameters() if p.requires_grad and ".layers." in n}


@pytest.fixture
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    base = build_tiny_llama(64)
    cfg = LlamaConfig(**{**base.config.to_dict(), "num_hidden_layers": 4})
    return LlamaForCausalLM(cfg)


def test_groups_unfreeze_top_down_every_k_steps(model):
    progressive = get_method("progressive")
    cfg = options(group_layers=1, unfreeze_every=2, modules=["lm_head"])
    model = apply(progressive, model, cfg)
    seen = []
    for step in range(0, 9):
        progressive.at_position(model, cfg, step, epoch=0)
        seen.append(trainable_layers(model))
    assert seen == [{3}, {3}, {2, 3}, {2, 3}, {1, 2, 3}, {1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}]
    assert model.lm_head.weight.requires_grad  # named modules train from the start (tied: embeddings too)
    assert not model.model.norm.weight.requires_grad


def test_groups_of_two_by_epochs(model):
    progressive = get_method("progressive")
    cfg = options(group_layers=2, unfreeze_every=1, unit="epochs")
    model = apply(progressive, model, cfg)
    assert trainable_layers(model) == {2, 3}
    progressive.on_step(model, cfg, step=50, epoch=0)
    assert trainable_layers(model) == {2, 3}  # steps do not count when the unit is epochs
    progressive.on_step(model, cfg, step=51, epoch=1)
    assert trainable_layers(model) == {0, 1, 2, 3}


def test_discriminative_learning_rates_shrink_down_the_stack(model):
    progressive = get_method("progressive")
    cfg = options(group_layers=1, lr_decay=0.5)
    groups = progressive.param_groups(apply(progressive, model, cfg), cfg)
    assert [round(g["lr"], 6) for g in groups] == [1e-3, 5e-4, 2.5e-4, 1.25e-4]
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])  # no tensor in two groups
