"""Out of memory, explained: the step and the settings to lower, instead of a CUDA traceback.

with explains_out_of_memory(step, cfg.train, cfg.data.max_length):
    loss.backward()

The same settings are the rule of `train.batch_size: auto` (training/auto.py): what one forward
pass holds is estimated from the model's shape (`activation_bytes_per_token`) and compared with
the memory the device has free (`free_memory`), so the batch chosen never exceeds what fits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


# Activations autograd keeps per token and decoder layer, in values of the model's dtype: q, k, v, the
# attention output, norms and residuals (~24 x hidden) and the MLP's gate/up/product (~8 x intermediate);
# plus ~3 x vocabulary for the logits and their gradient. For SmolLM2-135M in fp32 this gives ~3.7 MB per
# token, close to the ~4 MB measured (train.max_batch_tokens's description).
HIDDEN_FACTOR, INTERMEDIATE_FACTOR, VOCAB_FACTOR = 24, 8, 3
MEMORY_HEADROOM = 0.8  # share of the free memory a batch may plan on: allocator slack, fragmentation


def activation_bytes_per_token(model_config, dtype_bytes: int, checkpointing: bool) -> int:
    """Estimated activation memory of one token in a training forward pass (backward included)."""
    hidden = int(getattr(model_config, "hidden_size", 0) or getattr(model_config, "d_model", 0) or 768)
    layers = int(
        getattr(model_config, "num_hidden_layers", 0) or getattr(model_config, "num_layers", 0) or 12
    )
    intermediate = int(getattr(model_config, "intermediate_size", 0) or 4 * hidden)
    vocab = int(getattr(model_config, "vocab_size", 0) or 32000)
    per_layer = HIDDEN_FACTOR * hidden + INTERMEDIATE_FACTOR * intermediate
    # Gradient checkpointing keeps one hidden state per layer and recomputes one layer at a time.
    kept = layers * 2 * hidden + per_layer if checkpointing else layers * per_layer
    return dtype_bytes * (kept + VOCAB_FACTOR * vocab)


def free_memory(device: torch.device) -> int:
    """Bytes free for activations now: the GPU's free memory, else the RAM the system has available."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_ram()


def available_ram() -> int:
    """MemAvailable from /proc/meminfo, bounded by a cgroup (container) limit; sysconf elsewhere."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except OSError:
        pass
    if found is None:
        found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit, used = (
            Path("/sys/fs/cgroup", name).read_text().strip() for name in ("memory.max", "memory.current")
        )
        if limit != "max":
            found = min(found, int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return max(found, 0)


def tokens_that_fit(free_bytes: int, bytes_per_token: int, reserved_bytes: int = 0) -> int:
    """Tokens one forward pass may hold in `free_bytes`, after `reserved_bytes` (gradients, optimiser state)."""
    budget = MEMORY_HEADROOM * free_bytes - reserved_bytes
    return max(int(budget // max(bytes_per_token, 1)), 0)
