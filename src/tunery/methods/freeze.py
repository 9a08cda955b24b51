"""Partial fine-tuning: only the top `freeze.top_layers` layers and the modules named in
`freeze.modules` train; everything below stays frozen. Top layers hold the most
task-specific features, so this adapts a model at a fraction of full fine-tuning's memory."""

from __future__ import annotations

from tunery.methods.layers import always_trained, layer_prefixes, set_trainable

SUMMARY = "Train only the top N layers and/or named modules; the rest stays frozen."
MERGEABLE = True


def apply(model, config):
    prefixes = layer_prefixes(model)
    top = config.freeze.top_layers or 0
    set_trainable(model, prefixes[len(prefixes) - top :] if top else [], always_trained(config))
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("method=freeze trains nothing: set freeze.top_layers above 0 or name freeze.modules")
    return model
