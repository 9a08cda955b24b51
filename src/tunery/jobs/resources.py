"""What a job needs (GPUs, a queue) and what a worker has (queues, GPUs, slots), and how they meet.

    job:    {"resources": {"gpus": 2, "queue": "a100"}}       -> Celery queue "a100.gpus-2"
    worker: tunery worker --queues a100 --gpus 4 --slots 2    -> reads a100, a100.gpus-1 … a100.gpus-4

Routing is by queue name, so Celery and Redis do it and nothing polls: a job needing
g GPUs goes to `<queue>.gpus-<g>` (plain `<queue>` for none), and a worker with G GPUs
reads the queues of every g <= G. Inside a worker at most `slots` jobs run at once
(Celery's thread pool of that size, one message prefetched per thread) and each job
holds its GPUs from a `GpuPool` while it trains; a job on g > 1 GPUs trains on g
processes (torchrun, tunery.launch). Nothing here imports torch.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field


class JobResources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(0, ge=0, description="GPUs on one machine; a job on g > 1 trains on g processes.")
    nodes: int = Field(
        1, ge=1, le=1, description="Machines; multi-machine jobs run from `tunery train` for now."
    )
    queue: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="Worker pool; default: the server's TUNERY_QUEUE."
    )


def job_queue(resources: JobResources, default: str) -> str:
    """The Celery queue a job is sent to."""
    base = resources.queue or default
    return base if resources.gpus == 0 else f"{base}.gpus-{resources.gpus}"


def worker_queues(queues: list[str], gpus: int) -> list[str]:
    """Every queue a worker with these pools and `gpus` GPUs can serve."""
    return [f"{base}.gpus-{g}" if g else base for base in queues for g in range(gpus + 1)]


class GpuPool:
    """The GPUs of one worker, handed to its jobs; a job waits until enough are free."""

    def __init__(self, count: int):
        self.size = count
        self._free = list(range(count))
        self._changed = threading.Condition()

    def take(self, count: int) -> list[int]:
        if count > self.size:
            raise ValueError(f"the job needs {count} GPUs; this worker has {self.size}")
        with self._changed:
            self._changed.wait_for(lambda: len(self._free) >= count)
            taken, self._free = self._free[:count], self._free[count:]
            return taken

    def give_back(self, gpus: list[int]) -> None:
        with self._changed:
            self._free = sorted(self._free + gpus)
            self._changed.notify_all()
