"""What a request gets back: text pieces as they come, then how it finished (or why it failed).

Events bound for an asyncio loop go through that loop's `Outbox`: one wake-up of the loop per
engine step however many rows stepped (rather than one per token, which under a full batch
kept the event loop, and so every other request's HTTP handling, busy), and a row's pieces
that pile up while the loop is busy are handed over as one.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections import deque
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
    cancellation): the API's admission counts are released there, whoever ends it. A `whole`
    stream (an answer that is not streamed) keeps its pieces and hands them over as one, with the
    last event: no wake-up of the reader per token."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        on_close: Callable[[], None] | None = None,
        whole: bool = False,
    ):
        self._loop = loop
        self._held: Token | None = Token("") if whole else None  # a whole stream's pieces so far
        self._async: asyncio.Queue | None = asyncio.Queue() if loop else None
        self._outbox = outbox(loop) if loop else None
        self._sync: queue.SimpleQueue = queue.SimpleQueue()
        self._on_close, self._closed = on_close, False
        self._lock = threading.Lock()
        self.cancelled = False

    def put(self, event) -> None:
        events = [event]
        if self._held is not None:
            if isinstance(event, Token):
                self._held.text += event.text
                self._held.logprobs.extend(event.logprobs)
                return
            held, self._held = self._held, None
            if held.text or held.logprobs:
                events.insert(0, held)
        if self._outbox is not None and self._async is not None:  # made together: both or neither
            self._outbox.put(self._async, *events)
        else:
            for one in events:
                self._sync.put(one)
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


class Outbox:
    """Events from the engine thread for the queues of one asyncio loop, delivered in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: deque[tuple[asyncio.Queue, Any]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, target: asyncio.Queue, *events) -> None:
        with self._lock:
            self.items.extend((target, event) for event in events)
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """On the loop: every event put so far, a queue's consecutive pieces joined into one."""
        with self._lock:
            items, self.items, self._scheduled = self.items, deque(), False
        last: dict[int, Token] = {}  # per queue, the piece still open for joining
        ordered: list[tuple[asyncio.Queue, Any]] = []
        for target, event in items:
            joined = last.get(id(target))
            if isinstance(event, Token) and joined is not None:
                joined.text += event.text
                joined.logprobs = [*joined.logprobs, *event.logprobs]
                continue
            if isinstance(event, Token):
                event = last[id(target)] = Token(event.text, list(event.logprobs))
            else:
                last.pop(id(target), None)
            ordered.append((target, event))
        for target, event in ordered:
            target.put_nowait(event)


_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = weakref.WeakKeyDictionary()
_outboxes_lock = threading.Lock()


def outbox(loop: asyncio.AbstractEventLoop) -> Outbox:
    """The loop's outbox, made on first use."""
    with _outboxes_lock:
        found = _outboxes.get(loop)
        if found is None:
            found = _outboxes[loop] = Outbox(loop)
        return found
