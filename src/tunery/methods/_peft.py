"""What every PEFT-wrapped method shares: wrapping the model with its PEFT config."""

from __future__ import annotations


def wrap(model, peft_config):
    from peft import get_peft_model

    return get_peft_model(model, peft_config)
