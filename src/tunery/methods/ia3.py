"""IA3: learned vectors that rescale attention keys/values and feed-forward inputs (Liu et al., 2022)."""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap
from tunery.methods.targets import feedforward_targets, linear_targets

SUMMARY = "Learned scaling vectors on activations; the fewest trainable parameters of any method."
MERGEABLE = True


def apply(model, config):
    from peft import IA3Config

    targets = linear_targets(model, config.lora.target_modules)
    peft_config = IA3Config(
        target_modules=targets,
        feedforward_modules=feedforward_targets(model, targets),
        modules_to_save=config.lora.modules_to_save,
        task_type=task_type(config),
    )
    return wrap(model, peft_config)
