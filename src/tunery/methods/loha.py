"""LoHa: the weight update as a Hadamard product of two low-rank products (LyCORIS; Hyeon-Woo et al., 2022)."""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap
from tunery.methods.targets import linear_targets

SUMMARY = "Hadamard product of two low-rank updates: higher effective rank for the same size."
MERGEABLE = True


def apply(model, config):
    from peft import LoHaConfig

    lora = config.lora
    peft_config = LoHaConfig(
        r=lora.r,
        alpha=lora.alpha,
        module_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        modules_to_save=lora.modules_to_save,
        task_type=task_type(config),
    )
    return wrap(model, peft_config)
