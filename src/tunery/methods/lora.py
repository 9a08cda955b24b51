"""LoRA: low-rank updates B·A added to frozen linear layers (Hu et al., 2021), through PEFT.

Options in the `lora` section: rsLoRA scaling, DoRA, PiSSA/OLoRA/Gaussian initialisation,
per-module rank and alpha patterns, and modules trained in full beside the adapter.
PiSSA and OLoRA move the principal part of each weight into the adapter at start-up;
loading the adapter repeats that step on the same base, so saved runs reload exactly.
"""

from __future__ import annotations

from operator import attrgetter

from tunery.config import LoraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap
from tunery.methods.targets import linear_targets


def apply(model, options: LoraConfig, *, task_type: str, total_steps: int):
    return wrap(model, lora_config(model, options, task_type))


def lora_config(model, lora: LoraConfig, task_type: str):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float alpha works (it only scales)
        lora_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        rank_pattern=dict(lora.rank_pattern),
        alpha_pattern=dict(lora.alpha_pattern),
        modules_to_save=lora.modules_to_save,
        task_type=task_type,
    )


METHOD = Method(method_spec("lora"), options=attrgetter("lora"), apply=apply)
