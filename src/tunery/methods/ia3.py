"""IA3: learned vectors that rescale attention keys/values and feed-forward inputs (Liu et al., 2022)."""

from __future__ import annotations

from operator import attrgetter

from tunery.config import LoraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap
from tunery.methods.targets import feedforward_targets, linear_targets


def apply(model, lora: LoraConfig, *, task_type: str, total_steps: int):
    from peft import IA3Config

    targets = linear_targets(model, lora.target_modules)
    peft_config = IA3Config(
        target_modules=targets,
        feedforward_modules=feedforward_targets(model, targets),
        modules_to_save=lora.modules_to_save,
        task_type=task_type,
    )
    return wrap(model, peft_config)


METHOD = Method(method_spec("ia3"), options=attrgetter("lora"), apply=apply)
