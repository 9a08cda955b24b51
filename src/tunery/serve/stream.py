"""What a request gets back: text pieces as they come, then how it finished (or why it failed)."""

from __future__ import annotations

import asyncio
import queue
from dataclasses import dataclass


@dataclass
class Token:
    text: str


@dataclass
class Finish:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failure:
    message: str


class Stream:
    """The events of one request, handed from the engine thread to a thread or an asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self._loop = loop
        self._async: asyncio.Queue | None = asyncio.Queue() if loop else None
        self._sync: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, event) -> None:
        if self._loop is not None and self._async is not None:  # made together: both or neither
            self._loop.call_soon_threadsafe(self._async.put_nowait, event)
        else:
            self._sync.put(event)

    def events(self):
        while True:
            event = self._sync.get()
            yield event
            if not isinstance(event, Token):
                return

    async def aevents(self):
        while True:
            event = await self._async.get()
            yield event
            if not isinstance(event, Token):
                return
