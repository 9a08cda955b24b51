"""LoRA: low-rank updates B·A added to frozen linear layers (Hu et al., 2021), through PEFT.

Options in the `lora` section: rsLoRA scaling, DoRA, PiSSA/OLoRA/Gaussian initialisation,
per-module rank and alpha patterns, and modules trained in full beside the adapter.
PiSSA and OLoRA move the principal part of each weight into the adapter at start-up;
loading the adapter repeats that step on the same base, so saved runs reload exactly.
"""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap
from tunery.methods.targets import linear_targets

SUMMARY = "Low-rank adapters on linear layers; small, fast, mergeable. The default."
MERGEABLE = True


def apply(model, config):
    return wrap(model, lora_config(model, config))


def lora_config(model, config):
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        rank_pattern=dict(lora.rank_pattern),
        alpha_pattern=dict(lora.alpha_pattern),
        modules_to_save=lora.modules_to_save,
        task_type=task_type(config),
    )
