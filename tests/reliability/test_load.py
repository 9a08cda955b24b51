"""Load: 50 concurrent clients on the read endpoints while two jobs train, then 32 concurrent
streaming chat requests to a fine-tuned model. No request may fail; the latencies are printed
(`pytest -s`) for docs/reliability.md."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from tests.service.conftest import Service, tiny_job_options, wait_for

CLIENTS, REQUESTS_EACH, STREAMS = 50, 20, 32


@pytest.fixture
def service(tmp_path):
    running = Service(tmp_path / "home", {"TUNERY_MAX_CONCURRENT_JOBS": "2"})
    running.home.mkdir()
    yield running.start()
    running.stop()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@pytest.mark.slow
def test_read_endpoints_hold_50_clients_while_two_jobs_train_and_32_chat_streams_complete(
    service, train_file, tiny_model_dir
):
    key = service.key("team-a")
    client = openai.OpenAI(api_key=key, base_url=f"{service.url}/v1", max_retries=0)
    file_id = client.files.create(file=train_file.open("rb"), purpose="fine-tune").id

    def create(steps: int, save_every: int):
        return client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=file_id, hyperparameters={"batch_size": 4},
            extra_body={"tunery": tiny_job_options(max_steps=steps, save_every=save_every)},
        )  # fmt: skip

    first = create(steps=10, save_every=5)
    tuned = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(first.id)).status == "succeeded" and j.fine_tuned_model,
        timeout=180, what="the first job",
    )  # fmt: skip
    jobs = [create(steps=3000, save_every=100).id for _ in range(2)]
    wait_for(
        lambda: all(client.fine_tuning.jobs.retrieve(j).status == "running" for j in jobs),
        120,
        what="two running jobs",
    )
    wait_for(
        lambda: len(client.fine_tuning.jobs.list_events(jobs[1], limit=5).data) >= 5, 120, what="progress"
    )

    paths = [
        "/v1/files", "/v1/fine_tuning/jobs", f"/v1/fine_tuning/jobs/{jobs[0]}", f"/v1/fine_tuning/jobs/{jobs[1]}/events",
        f"/v1/fine_tuning/jobs/{jobs[0]}/checkpoints", f"/api/runs/{jobs[1]}", f"/api/runs/{jobs[0]}/evaluation",
        "/v1/models", "/api/registry", "/api/datasets", f"/api/files/{file_id}/report", "/api/methods",
    ]  # fmt: skip

    def reader(index: int) -> list[tuple[int, float]]:
        results = []
        with httpx2.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            for n in range(REQUESTS_EACH):
                started = time.perf_counter()
                status = http.get(paths[(index + n) % len(paths)]).status_code
                results.append((status, time.perf_counter() - started))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for batch in pool.map(reader, range(CLIENTS)) for r in batch]
    read_seconds = time.perf_counter() - started
    assert all(
        client.fine_tuning.jobs.retrieve(j).status == "running" for j in jobs
    )  # still training throughout
    errors = [status for status, _ in results if status != 200]
    latencies = [seconds for _, seconds in results]
    assert len(results) == CLIENTS * REQUESTS_EACH and errors == [], errors[:10]

    def chat(index: int) -> tuple[int, str | None, float]:
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model=tuned, messages=[{"role": "user", "content": f"item {index % 7} quantity {index % 5}"}],
            max_tokens=12, stream=True,
        )  # fmt: skip
        chunks, finish = 0, None
        for chunk in stream:
            chunks += 1
            finish = chunk.choices[0].finish_reason if chunk.choices else finish
            finish = finish or None
        return chunks, finish, time.perf_counter() - started

    with ThreadPoolExecutor(STREAMS) as pool:
        streams = list(pool.map(chat, range(STREAMS)))
    for job_id in jobs:
        client.fine_tuning.jobs.cancel(job_id)
    assert all(chunks > 1 and finish in ("stop", "length") for chunks, finish, _ in streams), streams
    stream_seconds = [seconds for _, _, seconds in streams]
    print(
        f"\nRELIABILITY load: {len(results)} reads by {CLIENTS} concurrent clients over {len(paths)} endpoints in "
        f"{read_seconds:.1f} s while 2 jobs trained: 0 errors, p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"{STREAMS} concurrent streaming chats: {len(streams)} completed, "
        f"p50 {statistics.median(stream_seconds):.2f} s, p99 {percentile(stream_seconds, 0.99):.2f} s"
    )
