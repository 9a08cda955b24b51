"""Out of memory, explained: the step and the settings to lower, instead of a CUDA traceback.

with explains_out_of_memory(step, cfg.train, cfg.data.max_length):
    loss.backward()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from tunery.config import TrainConfig
from tunery.errors import TuneryError


class TrainingOutOfMemory(TuneryError, RuntimeError):
    """A step ran out of (GPU or CPU) memory; the message names the settings that bound memory use."""

    code = "out_of_memory"


def memory_hint(train: TrainConfig, max_length: int) -> str:
    return (
        f"lower train.batch_size (now {train.batch_size}), train.max_batch_tokens (now {train.max_batch_tokens}) "
        f"or data.max_length (now {max_length}); raise train.grad_accum to keep the batch the optimiser "
        f"sees, or turn on train.gradient_checkpointing (now {'on' if train.gradient_checkpointing else 'off'})"
    )


@contextmanager
def explains_out_of_memory(step: int, train: TrainConfig, max_length: int) -> Iterator[None]:
    """Turn an out-of-memory error while running optimiser step `step` (0-based) into `TrainingOutOfMemory`."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as err:
        what = (str(err).splitlines() or [type(err).__name__])[0] or type(err).__name__
        raise TrainingOutOfMemory(
            f"out of memory at step {step + 1} ({what}); {memory_hint(train, max_length)}"
        ) from err
