"""Saving and loading what a run trained, for PEFT adapters and plain trainable weights alike.

PEFT methods save an adapter folder (`adapter_config.json`, `adapter_model.safetensors`).
`full`, `freeze` and `progressive` train the model's own tensors; they save only the
tensors that trained, as `trainable.safetensors`, with `trainable.json` naming the
method, so a run of a 135M model with two unfrozen layers stays a few MB.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunery.methods import is_peft

WEIGHTS_FILE = "trainable.safetensors"
INFO_FILE = "trainable.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TRAINABLE_FILES = (INFO_FILE, WEIGHTS_FILE)


def save_weights(model, folder: Path, method: str = "") -> None:
    if is_peft(model):
        model.save_pretrained(folder)
    else:
        save_trainable(model, folder, method)


def load_weights(model, folder: Path) -> None:
    """Load saved weights into a model already wrapped by the same method (used by resume)."""
    if (folder / WEIGHTS_FILE).exists():
        load_trainable(model, folder)
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{folder} has neither {WEIGHTS_FILE} nor adapter_model.safetensors")
    set_peft_model_state_dict(model, load_file(weights, device=str(next(model.parameters()).device)))


def save_trainable(model, folder: Path, method: str) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    # named_parameters lists a tied tensor once (embeddings = head), which safetensors requires.
    tensors = {
        name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad
    }
    save_file(tensors, folder / WEIGHTS_FILE)
    info = {"method": method, "tensors": len(tensors)}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")


def load_trainable(model, folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(folder / WEIGHTS_FILE, device=str(next(model.parameters()).device))
    unexpected = model.load_state_dict(tensors, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{folder}: weights for {unexpected[:3]} do not fit this model; wrong base model?")


def load_trained_model(base, folder: Path):
    """The base model with a run's trained tensors, and `disable_adapter()` like a PeftModel's.

    Evaluation compares base and tuned answers of one model in memory through
    `with model.disable_adapter():`; here that context swaps the base tensors back in.
    """
    from contextlib import contextmanager

    from safetensors import safe_open

    with safe_open(folder / WEIGHTS_FILE, framework="pt") as handle:
        names = list(handle.keys())
    parameters = dict(base.named_parameters())
    original = {name: parameters[name].detach().clone() for name in names if name in parameters}
    load_trainable(base, folder)
    trained = {name: parameters[name].detach().clone() for name in original}

    @contextmanager
    def disable_adapter():
        _copy_into(parameters, original)
        try:
            yield
        finally:
            _copy_into(parameters, trained)

    base.disable_adapter = disable_adapter
    return base


def _copy_into(parameters: dict, values: dict) -> None:
    import torch

    with torch.no_grad():
        for name, value in values.items():
            parameters[name].copy_(value)


def saved_method(folder: Path) -> str | None:
    """The method of a non-PEFT run's weights, or None for a PEFT adapter folder."""
    info = folder / INFO_FILE
    return json.loads(info.read_text(encoding="utf-8"))["method"] if info.exists() else None
