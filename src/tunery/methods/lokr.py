"""LoKr: the weight update as a Kronecker product of a small and a low-rank matrix (LyCORIS)."""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap
from tunery.methods.targets import linear_targets

SUMMARY = "Kronecker-product update: very small adapters, mergeable."
MERGEABLE = True


def apply(model, config):
    from peft import LoKrConfig

    lora = config.lora
    peft_config = LoKrConfig(
        r=lora.r,
        alpha=lora.alpha,
        module_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        modules_to_save=lora.modules_to_save,
        task_type=task_type(config),
    )
    return wrap(model, peft_config)
