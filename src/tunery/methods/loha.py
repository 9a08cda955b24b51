"""LoHa: the weight update as a Hadamard product of two low-rank products (LyCORIS; Hyeon-Woo et al., 2022)."""

from __future__ import annotations

from operator import attrgetter

from tunery.config import LoraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap
from tunery.methods.targets import linear_targets


def apply(model, lora: LoraConfig, *, task_type: str, total_steps: int):
    from peft import LoHaConfig

    peft_config = LoHaConfig(
        r=lora.r,
        alpha=lora.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float alpha works (it only scales)
        module_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        modules_to_save=lora.modules_to_save,
        task_type=task_type,
    )
    return wrap(model, peft_config)


METHOD = Method(method_spec("loha"), options=attrgetter("lora"), apply=apply)
