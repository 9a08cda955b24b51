"""Fine-tuning methods, one module each, registered by name.

Every method module has:

- `SUMMARY`: one line for `tunery methods`;
- `MERGEABLE`: whether its weights fold into the base model (`tunery merge`);
- `apply(model, config) -> model`: the model with only the method's parameters trainable.

PEFT methods return a `PeftModel`, so saving, loading and merging go through PEFT.
`full`, `freeze` and `progressive` return the plain model; their trainable tensors
are saved by `methods/weights.py`.

A method may also define, and the recipe calls when present:

- `NEEDS_TOTAL_STEPS = True`: `apply` also takes `total_steps` (adalora's rank schedule);
- `check(config, device)`: refuse before any weights load (qlora without bitsandbytes);
- `load_kwargs(config, device) -> dict`: extra `from_pretrained` arguments (qlora's quantisation);
- `optimizer_class(config)`: an optimiser other than `torch.optim.AdamW` (qlora's paged AdamW);
- `param_groups(model, config) -> list[dict]`: per-group learning rates (progressive);
- `on_step(model, config, step, epoch)`: after each optimiser step (adalora's rank budget,
  progressive's unfreezing);
- `at_position(model, config, step, epoch)`: put the model in the state of that point of the
  run, called when a run resumes (progressive).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from tunery.errors import TuneryError

METHODS = (
    "lora", "dora", "qlora", "adalora", "ia3", "loha", "lokr", "oft",
    "prefix", "prompt", "ptuning", "llama_adapter",
    "full", "freeze", "progressive",
)  # fmt: skip


# Methods that train the model's own tensors (saved as trainable.*), not a PEFT adapter.
OWN_WEIGHT_METHODS = ("full", "freeze", "progressive")


class MethodUnavailable(TuneryError, RuntimeError):
    """The method cannot run on this machine or model; the message says why and what to use instead."""

    code = "method_unavailable"


def get_method(name: str) -> ModuleType:
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return import_module(f"tunery.methods.{name}")


def apply_method(name: str, model, config, total_steps: int):
    """Wrap `model` with method `name`; only the method's parameters stay trainable."""
    module = get_method(name)
    if getattr(module, "NEEDS_TOTAL_STEPS", False):
        return module.apply(model, config, total_steps=total_steps)
    return module.apply(model, config)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as the parameters they stand for."""
    trainable = total = 0
    for parameter in model.parameters():
        n = parameter.numel()
        if parameter.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values are packed per stored byte
        total += n
        trainable += n if parameter.requires_grad else 0
    return trainable, total


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def run_files(method: str) -> tuple[str, ...]:
    """The files every finished run of `method` has: PEFT adapters, or the tensors that trained."""
    from tunery.run import RUN_FILES

    if method in OWN_WEIGHT_METHODS:
        weights = ("adapter/trainable.json", "adapter/trainable.safetensors")
    else:
        weights = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors")
    return RUN_FILES + weights
