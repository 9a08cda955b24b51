"""Fine-tuning methods, one module each, registered by name.

A method module has three names: `SUMMARY` (one line for `tunery methods`),
`MERGEABLE` (whether its weights fold into the base model) and
`apply(model, config) -> model`, which returns the model with only the method's
parameters trainable. PEFT methods return a `PeftModel`, so saving, loading and
merging go through PEFT for all of them.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

METHODS = ("lora",)


def get_method(name: str) -> ModuleType:
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return import_module(f"tunery.methods.{name}")


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
