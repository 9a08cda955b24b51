"""Fine-tuning methods, one module each, registered by name.

The registry (`tunery/config/registry.py`) lists every method with its facts: summary,
mergeable, packing, own weights, prompt-based, groupable. Each `tunery/methods/<name>.py`
defines `METHOD = Method(method_spec("<name>"), options=..., apply=...)`: the builder
that reads the method's own config section(s) once, `apply`, and the hooks it needs;
hooks it does not name do nothing.

PEFT methods return a `PeftModel`, so saving, loading and merging go through PEFT.
`full`, `freeze` and `progressive` return the plain model; their trainable tensors
are saved by `methods/weights.py`.

    method = get_method("lora")
    model = method.apply(model, method.options(cfg), task_type="CAUSAL_LM", total_steps=100)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

from tunery.config.registry import METHOD_NAMES, MethodSpec, method_spec, task_spec
from tunery.errors import TuneryError

METHODS = METHOD_NAMES  # the registry's names, in its order


class MethodUnavailable(TuneryError, RuntimeError):
    """The method cannot run on this machine or model; the message says why and what to use instead."""

    code = "method_unavailable"


class Apply(Protocol):
    """`apply(model, options, *, task_type, total_steps) -> model` with only the method's parameters trainable."""

    def __call__(self, model: Any, options: Any, /, *, task_type: str, total_steps: int) -> Any: ...


def _nothing(*_args: Any) -> None:
    """A hook the method does not need."""


def _no_load_kwargs(_options: Any, _device: Any) -> dict:
    return {}


def _adamw(_options: Any) -> type:
    import torch

    return torch.optim.AdamW


def _trainable_parameters(model: Any, _options: Any) -> list:
    return [p for p in model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class Method:
    """A method's code; each hook receives the method's options, never the whole run config."""

    spec: MethodSpec
    options: Callable[[Any], Any]  # TuneryConfig -> this method's section(s) and facts
    apply: Apply
    check: Callable[[Any, Any], None] = _nothing  # (options, device): refuse before any weights load
    load_kwargs: Callable[[Any, Any], dict] = _no_load_kwargs  # (options, device): from_pretrained extras
    optimizer_class: Callable[[Any], type] = _adamw  # (options)
    param_groups: Callable[[Any, Any], list] = _trainable_parameters  # (model, options)
    on_step: Callable[[Any, Any, int, int], None] = _nothing  # (model, options, steps done, epoch)
    at_position: Callable[[Any, Any, int, int], None] = _nothing  # the same, when a run resumes there

    @property
    def name(self) -> str:
        return self.spec.name


def get_method(name: str) -> Method:
    method_spec(name)  # an unknown name fails here, with the list of known ones
    return import_module(f"tunery.methods.{name}").METHOD


def apply_method(name: str, model, config, total_steps: int):
    """Wrap `model` with method `name` as `config` asks; only the method's parameters stay trainable."""
    method = get_method(name)
    task_type = task_spec(config.task).peft_task_type
    return method.apply(model, method.options(config), task_type=task_type, total_steps=total_steps)


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

    if method_spec(method).own_weights:
        weights = ("adapter/trainable.json", "adapter/trainable.safetensors")
    else:
        weights = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors")
    return RUN_FILES + weights
