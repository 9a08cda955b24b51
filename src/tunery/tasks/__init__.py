"""Task types, one module each: what model class to load, how data becomes examples, the loss.

- `sft`: causal LM on chat, instruction, completion or text data (loss on answers only);
- `classification`: a sequence-classification head (labels from the data) on an encoder
  such as MiniLM or a decoder (last-token pooling);
- `seq2seq`: encoder-decoder models (T5, BART) on chat, instruction or prompt/completion data.

The names and what each task can do (packing, chat template, labels) are in the registry,
`tunery/config/registry.py`; each module here has the functions of `Task`, whose
`loss_for` result the training loss takes as `parts` (see nn/loss.py).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Protocol

from tunery.config.registry import TASK_NAMES, TaskSpec, task_spec

TASKS = TASK_NAMES  # the registry's names, in its order


class Task(Protocol):
    """What the recipe and inference call on a task module."""

    SPEC: TaskSpec

    def load_model(
        self, path: str, device: Any, dtype: Any, config: Any, labels: Any = None, **load_kwargs
    ): ...

    def prepare(self, config: Any, tokenizer: Any) -> Any: ...

    def loss_for(self, model: Any, data: Any, config: Any) -> Any: ...


class LabelledTask(Task, Protocol):
    """A task whose registry entry says `labelled`: it also scores the validation set (accuracy, F1)."""

    def scores(self, model: Any, data: Any, pad_id: int, batch_size: int = 32) -> dict[str, Any]: ...


def get_task(name: str) -> Task:
    task_spec(name)  # an unknown name fails here, with the list of known ones
    return import_module(f"tunery.tasks.{name}")
