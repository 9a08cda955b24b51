"""Routing jobs to workers by queue name, and a worker's GPUs handed to one job at a time."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from tests.distributed.guide import guide_command
from tunery.jobs.resources import GpuPool, JobResources, job_queue, worker_queues


@pytest.mark.parametrize(
    ("resources", "queue"),
    [
        ({}, "tunery"),
        ({"queue": "gpu"}, "gpu"),
        ({"queue": "gpu", "gpus": 2}, "gpu.gpus-2"),
        ({"gpus": 1}, "tunery.gpus-1"),
    ],
)
def test_a_job_goes_to_the_queue_of_its_pool_and_gpu_count(resources, queue):
    assert job_queue(JobResources(**resources), default="tunery") == queue


def test_a_worker_reads_the_queues_of_every_gpu_count_it_can_serve():
    command = guide_command("tunery worker", "--name spare@%h")
    options = dict(zip(command, command[1:], strict=False))
    pools, gpus = options["--queues"].split(","), int(options["--gpus"])
    assert worker_queues(pools, gpus) == [
        "gpu",
        "gpu.gpus-1",
        "gpu.gpus-2",
        "cpu",
        "cpu.gpus-1",
        "cpu.gpus-2",
    ]
    assert job_queue(JobResources(queue="gpu", gpus=3), "tunery") not in worker_queues(pools, gpus)


def test_resources_a_job_cannot_have_are_refused():
    with pytest.raises(ValidationError, match="nodes"):
        JobResources(nodes=2)
    with pytest.raises(ValidationError, match="queue"):
        JobResources(queue="two words")
    with pytest.raises(ValidationError, match="gpus"):
        JobResources(gpus=-1)


def test_a_job_waits_for_its_gpus_and_gets_the_ones_given_back():
    pool = GpuPool(2)
    first = pool.take(1)
    got: list[list[int]] = []
    waiting = threading.Thread(target=lambda: got.append(pool.take(2)))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and not got  # one GPU free, two needed
    pool.give_back(first)
    waiting.join(5)
    assert got == [[0, 1]]
    with pytest.raises(ValueError, match="needs 3 GPUs; this worker has 2"):
        pool.take(3)
