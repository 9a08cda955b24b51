"""Which parameters belong to which transformer layer, for `freeze` and `progressive`."""

from __future__ import annotations

from dataclasses import dataclass

from tunery.config import FreezeConfig
from tunery.config.registry import task_spec

# Heads that a classification model adds on top; they always train.
HEAD_NAMES = ("classifier", "score")


def layer_prefixes(model) -> list[str]:
    """Names of the transformer layers, bottom to top: the largest `ModuleList` of the model.

    For an encoder-decoder (T5/BART) the decoder's layers are listed last, so "the top
    layers" are the decoder's.
    """
    import torch

    lists = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0
    ]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of layers to freeze or unfreeze")
    size = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    biggest = max(size(module) for _, module in lists)
    # Encoder and decoder stacks are near the biggest in size; embeddings-like lists are not.
    stacks = [(name, module) for name, module in lists if size(module) >= biggest / 2]
    stacks.sort(key=lambda item: "decoder" in item[0])
    return [f"{name}.{index}." for name, module in stacks for index in range(len(module))]


def set_trainable(model, prefixes: list[str], names: tuple[str, ...]) -> None:
    """Train parameters under the given layer prefixes or whose name contains one of `names`; freeze the rest."""
    # By identity over every name: a tied head (lm_head = embed_tokens) is matched by either name.
    chosen = {
        id(parameter)
        for name, parameter in model.named_parameters(remove_duplicate=False)
        if any(name.startswith(p) for p in prefixes) or any(n in name for n in names)
    }
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in chosen


@dataclass(frozen=True)
class FreezeOptions:
    """What `freeze` and `progressive` read: their section, the names that always train, the peak LR."""

    freeze: FreezeConfig
    always_trained: tuple[str, ...]  # freeze.modules, and a classifier's head
    lr: float  # progressive: the top group's learning rate


def freeze_options(config) -> FreezeOptions:
    heads = HEAD_NAMES if task_spec(config.task).labelled else ()
    return FreezeOptions(config.freeze, (*config.freeze.modules, *heads), config.train.lr)
