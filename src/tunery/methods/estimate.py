"""Trainable parameters and a training-memory estimate of every method on one model, without loading weights.

The model is built on PyTorch's `meta` device (shapes only, no memory), each method is applied
to a copy, and its parameters are counted. Memory = weights + gradients and two AdamW moments
of the trainable parameters (fp32), excluding activations, which depend on batch and length.

    rows = estimate_methods("smollm2-135m-instruct")
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from tunery.config.registry import METHOD_SPECS
from tunery.methods import apply_method, count_parameters

BYTES_PER_TRAINABLE = 4 + 4 + 8  # fp32 gradient, AdamW's two moments, fp32 master copy counted in weights


@dataclass
class MethodEstimate:
    method: str
    summary: str
    mergeable: bool
    trainable: int | None = None
    total: int | None = None
    memory_gb: float | None = None
    note: str = ""

    @property
    def percent(self) -> float | None:
        if not self.total or self.trainable is None:
            return None
        return 100 * self.trainable / self.total


def estimate_methods(model_name: str | None, task: str = "sft", dtype_bytes: int = 4) -> list[MethodEstimate]:
    rows = [MethodEstimate(spec.name, spec.summary, spec.mergeable) for spec in METHOD_SPECS]
    if model_name is None:
        return rows
    base = meta_model(model_name, task)
    for row in rows:
        try:
            model = apply_method(row.method, copy.deepcopy(base), _config(model_name, row.method, task), 1000)
        except Exception as err:  # noqa: BLE001 - an unsupported method is a row, not a crash
            row.note = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
            continue
        row.trainable, row.total = count_parameters(model)
        row.total = count_parameters(base)[1]
        row.memory_gb = round(_memory_bytes(base, row, dtype_bytes) / 1e9, 2)
    return rows


def meta_model(model_name: str, task: str):
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
    )

    from tunery.models import model_construction, resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model_name))
    auto = {"sft": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}.get(
        task, AutoModelForSequenceClassification
    )
    if task == "classification":
        config.num_labels = 2
    with model_construction(), torch.device("meta"):
        return auto.from_config(config)


def _config(model_name: str, method: str, task: str):
    from tunery.config import TuneryConfig

    return TuneryConfig.model_validate(
        {"model": model_name, "data": {"train": "-"}, "method": method, "task": task}
    )


def _memory_bytes(base, row: MethodEstimate, dtype_bytes: int) -> float:
    assert row.total is not None and row.trainable is not None, "counted before the memory estimate"
    weights: float = row.total * dtype_bytes
    if row.method == "qlora":
        linear = sum(m.weight.numel() for name, m in base.named_modules() if _is_block_linear(name, m))
        weights -= linear * (dtype_bytes - 0.5 - 0.127 / 8)  # NF4 + double-quantised block constants
    return weights + row.trainable * BYTES_PER_TRAINABLE


def _is_block_linear(name: str, module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) and "lm_head" not in name and "score" not in name
