"""What a request gets back: text pieces as they come, then how it finished (or why it failed)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Token:
    text: str
    logprobs: list[Any] = field(default_factory=list)  # sampler.TokenLogprob per token, when asked


@dataclass
class Finish:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failure:
    message: str


class Stream:
    """The events of one request, handed from the engine thread to a thread or an asyncio loop.

    `cancel()` (its client went away) tells the engine to drop the request's row at its next step;
    `on_close` runs once, from whichever thread ends the stream first (an answer's last event or a
    cancellation): the API's admission counts are released there, whoever ends it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, on_close: Callable[[], None] | None = None
    ):
        self._loop = loop
        self._async: asyncio.Queue | None = asyncio.Queue() if loop else None
        self._sync: queue.SimpleQueue = queue.SimpleQueue()
        self._on_close, self._closed = on_close, False
        self._lock = threading.Lock()
        self.cancelled = False

    def put(self, event) -> None:
        if self._loop is not None and self._async is not None:  # made together: both or neither
            self._loop.call_soon_threadsafe(self._async.put_nowait, event)
        else:
            self._sync.put(event)
        if not isinstance(event, Token):
            self._close()

    def cancel(self) -> None:
        self.cancelled = True
        self._close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._on_close is not None:
            self._on_close()

    def events(self):
        while True:
            event = self._sync.get()
            yield event
            if not isinstance(event, Token):
                return

    async def aevents(self):
        assert self._async is not None, "a stream made without a loop is read with events()"
        while True:
            event = await self._async.get()
            yield event
            if not isinstance(event, Token):
                return
