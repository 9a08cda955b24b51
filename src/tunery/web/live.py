"""A job's events as server-sent events, for the live job page.

    event: job          id: <event seq>     data: {"status": "running", "event": {EventPublic}}
    event: end                              data: {"status": "succeeded", "fine_tuned_model": "ft:…"}

The runner writes every metrics line, checkpoint and status change as an event row, so
following the rows (by `seq`, the order they were written) is following the job. The
event id is the row's seq: a browser that reconnects sends it as Last-Event-ID and gets
only what it missed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from tunery.service.schemas.jobs import EventPublic
from tunery.store.tables import Event, Job

POLL_SECONDS = 0.4
KEEPALIVE_SECONDS = 15.0
FINISHED = ("succeeded", "failed", "cancelled")


def new_events(sessions, job_id: str, after: int) -> tuple[str, str | None, list[tuple[int, dict]]]:
    """(job status, fine-tuned model, [(seq, event)] written after `after`), oldest first."""
    with sessions() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
        rows = session.scalars(
            select(Event).where(Event.job_id == job_id, Event.seq > after).order_by(Event.seq).limit(500)
        ).all()
        found = [(row.seq, EventPublic.of(row).model_dump()) for row in rows]
        return job.status, job.fine_tuned_model, found


def sse(kind: str, data: dict, id: int | None = None) -> str:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


async def job_event_stream(request: Request, job_id: str, after: int = 0) -> AsyncIterator[str]:
    sessions = request.app.state.sessions
    quiet_since = time.monotonic()
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        status, model, found = await run_in_threadpool(new_events, sessions, job_id, after)
        for seq, event in found:
            after = seq
            yield sse("job", {"status": status, "event": event}, id=seq)
        if found:
            quiet_since = time.monotonic()
        elif status in FINISHED:
            yield sse("end", {"status": status, "fine_tuned_model": model})
            return
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(0 if len(found) == 500 else POLL_SECONDS)
