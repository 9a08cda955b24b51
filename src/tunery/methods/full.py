"""Full fine-tuning: every parameter trains. The most capacity and the most memory (weights,
gradients and two AdamW moments: about 16 bytes per parameter in fp32)."""

from __future__ import annotations

from tunery.config.registry import method_spec
from tunery.methods import Method


def options(config) -> None:
    """Full fine-tuning has no options of its own."""


def apply(model, options: None, *, task_type: str, total_steps: int):
    for parameter in model.parameters():
        parameter.requires_grad = True
    return model


METHOD = Method(method_spec("full"), options=options, apply=apply)  # the result is already a plain model
