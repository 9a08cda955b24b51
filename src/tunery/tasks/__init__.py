"""Task types, one module each: what model class to load, how data becomes examples, the loss.

- `sft`: causal LM on chat, instruction, completion or text data (loss on answers only);
- `classification`: a sequence-classification head (labels from the data) on an encoder
  such as MiniLM or a decoder (last-token pooling);
- `seq2seq`: encoder-decoder models (T5, BART) on chat, instruction or prompt/completion data.

A task module has `load_model(path, device, dtype, config, labels, **load_kwargs)`,
`prepare(config, tokenizer) -> PreparedData` and `loss_for(model, data, config)`, whose result
the training loss takes as `parts` (see nn/loss.py).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

TASKS = ("sft", "classification", "seq2seq")


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return import_module(f"tunery.tasks.{name}")
