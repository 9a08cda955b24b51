"""DeepSpeed ZeRO (stage 1, 2 or 3; optimizer state, and at stage 3 the weights, offloaded on request)
under tunery's own loop: the same packing, loss, checkpoints and metrics as ddp and fsdp.

    tunery train config.yaml --set distributed.strategy=deepspeed --set distributed.zero_stage=3 \\
        --nproc-per-node 2

We hand our torch optimizer and transformers schedule to `deepspeed.initialize`, and DeepSpeed
only partitions optimizer state (1), gradients (2) and weights (3), reduces the gradients, clips and
steps. What makes N processes compute the update one process computes:

* `managed_gradient_accumulation: false`: every `engine.step()` ends an optimiser step, however
  many backward passes came before it, and `engine.backward(loss, scale_wrt_gas=False)` never divides
  by an accumulation count: the loss is already divided by the supervised tokens of all ranks.
* gradients are summed over ranks, not averaged: `gradient_allreduce_op: "sum"` at stages 1 and 2;
  stage 3 refuses that option, so there the loss is multiplied by the world size (`loss_factor`).
  Without it every gradient is exactly halved on 2 ranks, which a loss-only test would not see.
* the forward runs through the engine (its hook tells ZeRO that a backward comes), so the loss is
  the model's full forward (nn/loss.py's frozen-head loss reads the head outside it, and ZeRO-3 shards
  that head). ZeRO-2/3 reduce inside every backward, so every rank runs as many backward passes per
  step as the busiest one (distributed.Ranks.padding_passes).

A checkpoint stays tunery's atomic, verified folder: every rank writes its shard of DeepSpeed's state
into `deepspeed/` of the staging folder, then rank 0 adds the adapter, the loop position and the
manifest (which covers DeepSpeed's files and the `zero_to_fp32.py` it copies beside them) and renames.
On a CPU, DeepSpeed runs with DS_ACCELERATOR=cpu over gloo; its first start builds a small C++
communication op (about a minute, cached in ~/.cache/torch_extensions).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from tunery.training import checkpoint

ENGINE_STATE = "deepspeed"  # the sub-folder (DeepSpeed's "tag") of a checkpoint holding its state


def prepare(device: torch.device) -> None:
    """Before deepspeed is imported: refuse without the extra, and pick the CPU accelerator on a CPU."""
    from tunery.libraries import require_extra

    require_extra("deepspeed", "distributed.strategy=deepspeed")
    if device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # our metrics.jsonl reports progress


def engine_config(
    zero_stage: int, offload: bool, max_grad_norm: float | None, world: int, dtype: torch.dtype
) -> dict:
    """DeepSpeed's config for our loop: caller-owned step boundaries, summed gradients, our precision."""
    zero: dict[str, Any] = {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
        if zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,  # unused: our loop feeds its own batches
        "gradient_accumulation_steps": 1,
        "train_batch_size": world,
        "managed_gradient_accumulation": False,
        "gradient_clipping": max_grad_norm or 0.0,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # our torch AdamW, also under offload
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if zero_stage < 3:
        config["gradient_allreduce_op"] = "sum"
    return config


def start_engine(model, optimizer, scheduler, distributed, max_grad_norm: float | None, world: int):
    """Wrap the PEFT model, our optimizer and schedule in a DeepSpeed engine, which steps the schedule."""
    import deepspeed

    from tunery.config import ConfigError
    from tunery.methods import is_peft

    if not is_peft(model) or type(model.active_peft_config).__name__ == "AdaLoraConfig":
        raise ConfigError(
            "distributed.strategy=deepspeed trains the adapter methods (lora, dora, ia3, …) but adalora, "
            "whose rank allocation reads gradients ZeRO shards; for full, freeze, progressive and adalora "
            "use distributed.strategy=ddp"
        )
    dtype = next(p.dtype for p in model.parameters() if not p.requires_grad)
    config = engine_config(distributed.zero_stage, distributed.offload, max_grad_norm, world, dtype)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
    )
    return engine


def loss_factor(engine) -> float:
    """What a loss is multiplied by so that DeepSpeed's gradient reduction sums over the ranks."""
    if engine.zero_optimization_stage() == 3 and engine.gradient_average:
        return float(engine.dp_world_size)
    return 1.0


def backward(engine, loss: torch.Tensor) -> None:
    """One pass's backward; `loss` is already divided by the supervised tokens of all ranks."""
    engine.backward(loss * loss_factor(engine), scale_wrt_gas=False)


def gathered(engine):
    """Whole trainable weights on every rank for a while (ZeRO-3 holds a shard); collective.

    Stages 1 and 2 keep whole weights on every rank. The frozen base is never gathered: the writers
    (PEFT's save_pretrained, training/checkpoint.py) read only the trained tensors.
    """
    if engine is None or engine.zero_optimization_stage() != 3:
        return contextlib.nullcontext()
    import deepspeed

    trained = [p for p in engine.module.parameters() if p.requires_grad]
    return deepspeed.zero.GatheredParameters(trained, modifier_rank=None)


def save_checkpoint(engine, ranks, folder: Path, step: int, state: dict, keep: int) -> None:
    """Every rank writes its shard into the staging folder; rank 0 adds ours, verifies and renames."""
    staging = checkpoint.staging_folder(folder, step)
    if ranks.main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    ranks.barrier()
    engine.save_checkpoint(
        str(staging), tag=ENGINE_STATE, client_state={}, save_latest=False, exclude_frozen_parameters=True
    )
    ranks.barrier()
    model = engine.module
    ranks.on_main(checkpoint.save_checkpoint, folder, step, model, None, None, state, keep=keep, staged=True)


def load_engine_state(engine, path: Path) -> None:
    """Trained weights, optimizer shards and schedule of a checkpoint (same world size and stage)."""
    if not (path / ENGINE_STATE).is_dir():
        raise checkpoint.CheckpointError(
            f"{path} was not written under distributed.strategy=deepspeed; resume it with the strategy it "
            "was trained with"
        )
    loaded, _ = engine.load_checkpoint(
        str(path), tag=ENGINE_STATE, load_module_strict=False, load_optimizer_states=True,
        load_lr_scheduler_states=True,
    )  # fmt: skip
    if loaded is None:
        raise checkpoint.CheckpointError(f"DeepSpeed found no state in {path / ENGINE_STATE}")


def close(engine) -> None:
    """Free the engine's buffers and threads before the process group goes."""
    engine.destroy()
