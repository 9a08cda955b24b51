"""One run on several processes: process group, batch sharding, gradient sums, rank-0 writes.

    tunery train config.yaml --nproc-per-node 2     # launches `torchrun … -m tunery train --resume RUN`

The recipe calls a handful of hooks here and stays one readable loop; on one process
every hook is a no-op. `train.batch_size` is the *global* micro-batch: the same config
trains the same way on 1 process or N. Rank r takes examples r, r+N, r+2N, … of each
micro-batch (a batch holds examples of similar length, so ranks get even work), the
loss of every rank is divided by the supervised tokens of all ranks, and gradients are
summed, so a step on N processes computes the same update as on one.

ddp: the arithmetic of torch's DistributedDataParallel, written out: after the step's
backward passes the trainable parameters' gradients are summed in flat all-reduces.
We do not wrap the model in `DistributedDataParallel` because its reducer expects
every forward to go through the wrapper, while nn/loss.py runs the model's body
and head apart; and for adapters (a few MB of gradients) one all-reduce per optimiser
step costs little. The model stays the PEFT model the rest of tunery knows.

fsdp: PyTorch's FSDP2 (`fully_shard`), one unit per decoder layer (the class the model
names in `_no_split_modules`, or `distributed.wrap`) and the root, gradients summed
rather than averaged. The loss then runs the whole forward (the head is sharded with
the embeddings it is tied to).

deepspeed: DeepSpeed ZeRO stage 1, 2 or 3 under this same loop (training/zero.py): the
engine partitions, reduces, clips and steps; it runs even on one process when asked for.

Only rank 0 writes metrics, the run record, checkpoints and the adapter (`for_this_rank`,
`Ranks.on_main`); the others wait at a barrier so none reads a half-written checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tunery.run import Run

log = logging.getLogger("tunery.training")
BUCKET_ELEMENTS = 1 << 24  # gradients summed per all-reduce: 64 MB of fp32


def launched_rank() -> int:
    """This process's rank as torchrun/accelerate set it (0 when not launched by them)."""
    return int(os.environ.get("RANK", "0"))


def launched_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Ranks:
    """Where this process stands among the run's processes, and the hooks the recipe calls."""

    rank: int = 0
    world: int = 1
    strategy: str = "single"  # single | ddp | fsdp | deepspeed
    engine: Any = None  # deepspeed: the DeepSpeed engine around the model (`start_engine`)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, groups: list[list]) -> list[list]:
        """This rank's share of each micro-batch of a step; empty shares are dropped."""
        if self.world == 1:
            return groups
        shares = [group[self.rank :: self.world] for group in groups]
        return [share for share in shares if share]

    def loss_parts(self, parts):
        """FSDP and ZeRO-3 shard the head with the tied embeddings, and DeepSpeed's forward must go
        through its engine: the loss runs the whole forward."""
        if self.strategy in ("fsdp", "deepspeed") and not hasattr(parts, "summed_loss"):
            return None
        return parts

    def start_engine(self, model, optimizer, scheduler, distributed, max_grad_norm: float | None) -> None:
        """deepspeed: wrap the model, optimizer and schedule in DeepSpeed's engine (else nothing)."""
        if self.strategy == "deepspeed":
            from tunery.training import zero

            self.engine = zero.start_engine(
                model, optimizer, scheduler, distributed, max_grad_norm, self.world
            )

    def forward_model(self, model):
        """What the training forward runs through: the DeepSpeed engine, else the model itself."""
        return model if self.engine is None else self.engine

    def backward(self, loss) -> None:
        if self.engine is None:
            loss.backward()
        else:
            from tunery.training import zero

            zero.backward(self.engine, loss)

    def padding_passes(self, passes: int) -> int:
        """How many zero-weighted passes this rank adds so that every rank runs as many backward
        passes as the busiest (ZeRO-2/3 reduce gradients in each); agreed before the first backward."""
        if self.engine is None or self.world == 1:
            return 0
        return int(all_max(passes)) - passes

    def sync(self, model, loss: float) -> float:
        """After a step's backward passes: sum gradients (ddp; FSDP does it itself) and the loss."""
        if self.world == 1:
            return loss
        if self.strategy == "ddp":
            sum_gradients(model)
        return all_sum(loss)

    def on_main(self, write: Callable[..., Any], *args, **kwargs) -> None:
        """Run `write` on rank 0 only (with whole tensors under FSDP); the others wait for it."""
        with self._gathered(args):
            if self.main:
                write(*args, **kwargs)
        self.barrier()

    def save_checkpoint(self, folder, step: int, model, optimizer, scheduler, state: dict, keep: int) -> None:
        """Rank 0 writes the checkpoint (with DeepSpeed, every rank writes its shard of the state first)."""
        from tunery.training import checkpoint

        if self.engine is not None:
            from tunery.training import zero

            zero.save_checkpoint(self.engine, self, folder, step, state, keep)
            return
        self.on_main(checkpoint.save_checkpoint, folder, step, model, optimizer, scheduler, state, keep=keep)

    def load_checkpoint(self, path, model, optimizer, scheduler) -> dict:
        """Every rank restores the checkpoint into its model, optimizer and schedule; returns the loop state."""
        from tunery.training import checkpoint

        if self.engine is not None:
            from tunery.training import zero

            restore = lambda folder: zero.load_engine_state(self.engine, folder)  # noqa: E731
            return checkpoint.load_checkpoint(path, model, None, None, engine_state=restore)
        with self.loading(model, optimizer):
            return checkpoint.load_checkpoint(path, model, optimizer, scheduler)

    def close(self) -> None:
        """Free DeepSpeed's engine (its buffers and threads) before the process group goes."""
        if self.engine is not None:
            from tunery.training import zero

            zero.close(self.engine)
            self.engine = None

    @contextlib.contextmanager
    def loading(self, model, optimizer):
        """Under FSDP, `load_state_dict()` of the model and optimizer take whole tensors (a checkpoint's)
        and keep each rank's shard of them, so training/checkpoint.py loads as on one process."""
        if self.strategy != "fsdp":
            yield
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        whole = StateDictOptions(full_state_dict=True, strict=False)

        def load_model(state, strict=True, **_):
            del model.load_state_dict  # set_model_state_dict calls the module's own
            try:
                return set_model_state_dict(model, state, options=whole)
            finally:
                model.load_state_dict = load_model

        def load_optimizer(state):
            del optimizer.load_state_dict
            try:
                return set_optimizer_state_dict(model, optimizer, state, options=whole)
            finally:
                optimizer.load_state_dict = load_optimizer

        model.load_state_dict, optimizer.load_state_dict = load_model, load_optimizer
        try:
            yield
        finally:
            del model.load_state_dict, optimizer.load_state_dict

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    @contextlib.contextmanager
    def _gathered(self, objects: tuple):
        """Under FSDP, the model's and optimizer's `state_dict()` give rank 0 whole tensors for a while.

        Gathering is collective, so every rank comes here; the writers (PEFT's save_pretrained,
        training/checkpoint.py) read `state_dict()` and need no FSDP code of their own. ZeRO-3 gathers
        the trained weights into the parameters themselves for a while.
        """
        if self.strategy != "fsdp":
            from tunery.training import zero

            with zero.gathered(self.engine):
                yield
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        whole = StateDictOptions(full_state_dict=True, cpu_offload=True)  # on rank 0's CPU only
        model = next(o for o in objects if isinstance(o, torch.nn.Module))
        patched: list[tuple[Any, dict[str, Any]]] = [(model, get_model_state_dict(model, options=whole))]
        for optimizer in (o for o in objects if isinstance(o, torch.optim.Optimizer)):
            patched.append((optimizer, get_optimizer_state_dict(model, optimizer, options=whole)))
        for owner, state in patched:
            owner.state_dict = lambda *args, _state=state, **kwargs: _state
        try:
            yield
        finally:
            for owner, _ in patched:
                del owner.state_dict


def setup(distributed, threads: int | None, device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun started (a no-op on one process); returns (ranks, device)."""
    world = launched_world()
    if world == 1 and distributed.strategy != "deepspeed":
        return Ranks(), device
    strategy = "ddp" if distributed.strategy == "auto" else distributed.strategy
    if strategy == "deepspeed":
        from tunery.training import zero

        zero.prepare(device)  # before deepspeed is imported
    from tunery.launch import die_with_parent

    if "MASTER_ADDR" in os.environ:  # launched by torchrun
        die_with_parent()  # a rank outlives neither torchrun nor the job worker above it
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = distributed.backend if distributed.backend != "auto" else _default_backend(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, **_rendezvous(world))
    if threads is None and device.type == "cpu":
        # Processes on one machine share its cores; torchrun's default of 1 thread each wastes them.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local_world))
    log.info("rank %d of %d (%s, %s on %s)", launched_rank(), world, strategy, backend, device)
    return Ranks(rank=launched_rank(), world=world, strategy=strategy), device


def _rendezvous(world: int) -> dict:
    """torchrun's environment; a process not launched by it (deepspeed on one process) meets itself."""
    if "MASTER_ADDR" in os.environ or world > 1:
        return {}
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return {"init_method": f"tcp://127.0.0.1:{port}", "rank": 0, "world_size": 1}


def _default_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def wrap(model, ranks: Ranks, distributed):
    """Make every rank start from rank 0's weights (ddp), or shard the model (fsdp)."""
    if ranks.strategy == "ddp":
        for parameter in trainable(model):
            dist.broadcast(parameter.data, src=0)
    elif ranks.strategy == "fsdp":
        from tunery.methods import is_peft

        if not is_peft(model):
            from tunery.config import ConfigError

            raise ConfigError(
                "distributed.strategy=fsdp works with the adapter methods (lora, dora, ia3, …) for now; "
                "for full, freeze and progressive use distributed.strategy=ddp"
            )
        shard_model(model, distributed.wrap, distributed.offload)
    return model


def shard_model(model, wrap_classes: list[str] | None, offload: bool) -> None:
    """FSDP2 units: every module of the wrap classes (default: the decoder layer), then the root."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    from tunery.launch import decoder_layer_classes

    names = set(wrap_classes or decoder_layer_classes(model))
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        from tunery.config import ConfigError

        raise ConfigError(
            f"distributed.wrap: the model has no module of class {sorted(names)}; "
            "set distributed.wrap to its decoder layer class (e.g. [LlamaDecoderLayer])"
        )
    policy = CPUOffloadPolicy() if offload else OffloadPolicy()
    for layer in layers:
        fully_shard(layer, offload_policy=policy)
    fully_shard(model, offload_policy=policy)
    model.set_gradient_divide_factor(1.0)  # sum, as the loss is already divided by all ranks' tokens


def trainable(model) -> list[torch.nn.Parameter]:
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def sum_gradients(model) -> None:
    """Sum the trainable parameters' gradients over all ranks, in flat buckets."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    parameters = trainable(model)
    for parameter in parameters:
        if parameter.grad is None:  # a rank whose share touched no such weight still takes part
            parameter.grad = torch.zeros_like(parameter)
    for bucket in _buckets(parameters):
        grads = [_grad(parameter) for parameter in bucket]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        for grad, summed in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(summed)


def _grad(parameter: torch.nn.Parameter) -> torch.Tensor:
    """The gradient that sum_gradients has made sure every trainable parameter has."""
    assert parameter.grad is not None, "sum_gradients gives every trainable parameter a gradient first"
    return parameter.grad


def _buckets(parameters: list[torch.nn.Parameter]) -> list[list[torch.nn.Parameter]]:
    buckets: list[list[torch.nn.Parameter]] = [[]]
    size = 0
    for parameter in parameters:
        same_kind = not buckets[-1] or _grad(buckets[-1][0]).dtype == _grad(parameter).dtype
        if buckets[-1] and (size + parameter.numel() > BUCKET_ELEMENTS or not same_kind):
            buckets.append([])
            size = 0
        buckets[-1].append(parameter)
        size += parameter.numel()
    return [bucket for bucket in buckets if bucket]


def all_max(value: float | int) -> float:
    """The largest value of a number over all ranks (itself on one process)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def all_sum(value: float | int):
    """The sum of a number over all ranks (itself on one process)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    total = tensor.item()
    return int(total) if isinstance(value, int) else total


def teardown(ranks: Ranks | None = None) -> None:
    if ranks is not None:
        ranks.close()
    if dist.is_initialized():
        dist.destroy_process_group()


class FollowerRun(Run):
    """The run as ranks other than 0 see it: they read it, rank 0 alone writes it."""

    def update_record(self, **fields: Any) -> dict:
        return {**self.record, **fields}

    def log_metrics(self, **values: Any) -> None:
        pass

    def pin_datasets(self, sources: dict) -> None:
        pass


def for_this_rank(run: Run) -> Run:
    return FollowerRun(run.path) if launched_rank() > 0 else run
