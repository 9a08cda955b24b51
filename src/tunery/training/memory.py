"""Out of memory, explained: the step and the settings to lower, instead of a CUDA traceback.

@explains_out_of_memory
def train_step(model, parts, groups, cfg, device, pad_id, step): ...
"""

from __future__ import annotations

import functools
import inspect

import torch

from tunery.errors import TuneryError


class TrainingOutOfMemory(TuneryError, RuntimeError):
    """A step ran out of (GPU or CPU) memory; the message names the settings that bound memory use."""

    code = "out_of_memory"


def memory_hint(cfg) -> str:
    train = cfg.train
    return (
        f"lower train.batch_size (now {train.batch_size}), train.max_batch_tokens (now {train.max_batch_tokens}) "
        f"or data.max_length (now {cfg.data.max_length}); raise train.grad_accum to keep the batch the optimiser "
        f"sees, or turn on train.gradient_checkpointing (now {'on' if train.gradient_checkpointing else 'off'})"
    )


def explains_out_of_memory(step_function):
    """Turn an out-of-memory error inside `step_function(…, cfg, …, step)` into `TrainingOutOfMemory`."""
    signature = inspect.signature(step_function)

    @functools.wraps(step_function)
    def step(*args, **kwargs):
        try:
            return step_function(*args, **kwargs)
        except (torch.OutOfMemoryError, MemoryError) as err:
            bound = signature.bind(*args, **kwargs).arguments
            what = (str(err).splitlines() or [type(err).__name__])[0] or type(err).__name__
            raise TrainingOutOfMemory(
                f"out of memory at step {bound['step'] + 1} ({what}); {memory_hint(bound['cfg'])}"
            ) from err

    return step
