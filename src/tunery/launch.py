"""Launching one run on several processes or machines: the torchrun command, checked before it starts.

    tunery train config.yaml --nproc-per-node 2                       # one machine, 2 processes
    tunery train config.yaml --nproc-per-node 8 --nnodes 2 --node-rank 0 \\
        --master-addr 10.0.0.1 --master-port 29500                     # and --node-rank 1 on the other

The launching process creates the run directory (on the first node), then starts
`torchrun … -m tunery train --resume RUN_DIR` so every rank opens the same run, and a
rerun of the same command after a crash resumes it. ddp, fsdp and deepspeed all run
under torchrun (PyTorch's own launcher) and tunery's own loop; DeepSpeed's ZeRO config is
built from ours inside each process (training/zero.py).

Nothing here imports torch: the CLI builds commands before any process trains.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tunery.config import ConfigError, TuneryConfig, load_config
from tunery.errors import TuneryError
from tunery.libraries import require_extra
from tunery.run import Run

DEFAULT_MASTER_PORT = 29500


class LaunchFailed(TuneryError, RuntimeError):
    """The launcher or one of its processes failed; the message says where the log is."""

    code = "launch_failed"


@dataclass(frozen=True)
class Launch:
    """Where the processes of one run are: processes per node, nodes, this node's rank, rendezvous."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise ConfigError("--nproc-per-node and --nnodes must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(
                f"--node-rank {self.node_rank} must be between 0 and --nnodes - 1 ({self.nnodes - 1})"
            )
        if self.nnodes > 1 and not self.master_addr:
            raise ConfigError(
                f"--nnodes {self.nnodes} needs --master-addr: the address of the node with --node-rank 0"
            )


def torchrun_command(launch: Launch, script_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run … -m tunery train ARGS` for every strategy."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={launch.nproc_per_node}"]
    if launch.nnodes == 1 and launch.master_addr is None and launch.master_port is None:
        command.append("--standalone")  # a free local port: several runs on one machine never collide
    else:
        command += [
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            f"--master-addr={launch.master_addr or '127.0.0.1'}",
            f"--master-port={launch.master_port or DEFAULT_MASTER_PORT}",
        ]
    return [*command, "-m", "tunery", "train", *script_args]


def micro_batch_per_process(cfg: TuneryConfig, world: int) -> int | None:
    """train.batch_size is the global micro-batch; each process takes an equal share of it.

    None for batch_size: auto, whose rule picks a multiple of the process count (training/auto.py)."""
    if cfg.train.batch_size == "auto":
        return None
    if cfg.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) is the global micro-batch and must divide evenly "
            f"over the {world} processes; set it to a multiple of {world}"
        )
    return cfg.train.batch_size // world


def decoder_layer_classes(model) -> list[str]:
    """The classes FSDP shards as units: the decoder layer the model names (transformers' `_no_split_modules`).

    Takes a model, a PEFT model or a model class, e.g. ['LlamaDecoderLayer'], ['Qwen2DecoderLayer'], ['GPT2Block'].
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = getattr(base, "_no_split_modules", None)
    if not names:
        name = base.__name__ if isinstance(base, type) else type(base).__name__
        raise ConfigError(
            f"{name} does not name its decoder layer class; set distributed.wrap to it (e.g. [MyDecoderLayer])"
        )
    return sorted(names)


def launch_training(
    config, overrides: list[str], resume: str | Path | None, launch: Launch, quiet: bool = False
) -> Run:
    """Create (or open) the run here, then train it on `launch.world` processes; returns the finished run."""
    launch.check()
    cfg = load_config(Path(resume) / "config.yaml" if resume is not None else config, overrides)
    check_strategy(cfg, launch)
    if resume is not None:
        run = Run.open(resume)
        script_args = ["--resume", str(run.path), *[item for o in overrides for item in ("--set", o)]]
    else:
        run = _run_of_this_node(cfg, launch)
        script_args = ["--resume", str(run.path)]
    command = torchrun_command(launch, [*script_args, *(["--quiet"] if quiet else [])])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cfg.train.threads is None:
        env.pop("OMP_NUM_THREADS", None)  # our ranks divide the cores among themselves
    returncode = subprocess.run(command, env=env, preexec_fn=die_with_parent).returncode
    if returncode != 0:
        error = Run.open(run.path).record["error"]  # what rank 0 failed with, if it was rank 0
        if error:
            raise LaunchFailed(
                f"training on {launch.world} processes failed ({error}); see {run.path / 'train.log'}"
            )
        raise LaunchFailed(
            f"training on {launch.world} processes failed (exit code {returncode}); see {run.path / 'train.log'}; "
            f"launch again with --resume {run.path} to continue from the last checkpoint"
        )
    return Run.open(run.path)


def check_strategy(cfg: TuneryConfig, launch: Launch) -> None:
    """Refuse, before anything starts, what the chosen strategy cannot do."""
    if cfg.distributed.strategy == "deepspeed":
        require_extra("deepspeed", "distributed.strategy=deepspeed")
    micro_batch_per_process(cfg, launch.world)


def die_with_parent() -> None:
    """This process ends when its parent does (Linux): torchrun with its launcher, a rank with torchrun,
    so a killed job worker or launcher never leaves a training behind to race the one that resumes."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_of_this_node(cfg: TuneryConfig, launch: Launch) -> Run:
    """The first node creates the run; the others find it on the shared storage by its name."""
    if launch.nnodes == 1 or launch.node_rank == 0:
        if launch.nnodes > 1 and not cfg.run_name:
            raise ConfigError(f"--nnodes {launch.nnodes} needs run_name set, the same on every node")
        return Run.create(cfg)
    if not cfg.run_name:
        raise ConfigError(f"--nnodes {launch.nnodes} needs run_name set, the same on every node")
    return Run(Path(cfg.output_dir) / cfg.run_name)
