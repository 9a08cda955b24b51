"""Partial fine-tuning: only the top `freeze.top_layers` layers and the modules named in
`freeze.modules` train; everything below stays frozen. Top layers hold the most
task-specific features, so this adapts a model at a fraction of full fine-tuning's memory."""

from __future__ import annotations

from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods.layers import FreezeOptions, freeze_options, layer_prefixes, set_trainable


def apply(model, options: FreezeOptions, *, task_type: str, total_steps: int):
    prefixes = layer_prefixes(model)
    top = options.freeze.top_layers or 0
    set_trainable(model, prefixes[len(prefixes) - top :] if top else [], options.always_trained)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("method=freeze trains nothing: set freeze.top_layers above 0 or name freeze.modules")
    return model


METHOD = Method(method_spec("freeze"), options=freeze_options, apply=apply)
