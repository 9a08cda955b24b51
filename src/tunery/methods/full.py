"""Full fine-tuning: every parameter trains. The most capacity and the most memory (weights,
gradients and two AdamW moments: about 16 bytes per parameter in fp32)."""

from __future__ import annotations

SUMMARY = "Every parameter trains: most capacity, most memory; saves a full set of weights."
MERGEABLE = True  # the result is already a plain model


def apply(model, config):
    for parameter in model.parameters():
        parameter.requires_grad = True
    return model
