"""Events from the engine thread reach an asyncio loop in order, pieces piled up while the loop
was busy as one, with one wake-up of the loop for many rows' tokens."""

from __future__ import annotations

import asyncio
import threading

from tunery.serve.stream import Failure, Finish, Stream, Token


async def read(stream: Stream) -> list:
    return [event async for event in stream.aevents()]


def test_pieces_put_while_the_loop_is_busy_arrive_joined_and_in_order():
    async def main():
        loop = asyncio.get_running_loop()
        streams = [Stream(loop) for _ in range(3)]
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counted(*args):
            nonlocal wakeups
            wakeups += 1
            return original(*args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]

        def engine():  # the loop is blocked below while this runs: everything piles up
            for step in range(5):
                for i, stream in enumerate(streams):
                    stream.put(Token(f"{i}.{step} ", [step]))
            streams[0].put(Finish("length", 3, 5))
            streams[1].put(Failure("boom"))
            streams[2].put(Token("last"))
            streams[2].put(Finish("stop", 3, 6))

        thread = threading.Thread(target=engine)
        thread.start()
        thread.join()
        events = await asyncio.gather(*(read(s) for s in streams))
        return events, wakeups

    events, wakeups = asyncio.run(main())
    assert events[0] == [Token("0.0 0.1 0.2 0.3 0.4 ", [0, 1, 2, 3, 4]), Finish("length", 3, 5)]
    assert events[1] == [Token("1.0 1.1 1.2 1.3 1.4 ", [0, 1, 2, 3, 4]), Failure("boom")]
    assert events[2] == [Token("2.0 2.1 2.2 2.3 2.4 last", [0, 1, 2, 3, 4]), Finish("stop", 3, 6)]
    assert wakeups == 1, "one wake-up of the loop for the 19 events put while it was busy"


def test_a_stream_read_as_it_comes_gets_every_piece():
    async def main():
        loop = asyncio.get_running_loop()
        stream = Stream(loop)
        seen = []

        def engine():
            for i in range(50):
                stream.put(Token(str(i % 10)))
            stream.put(Finish("length", 1, 50))

        thread = threading.Thread(target=engine)
        thread.start()
        seen = await read(stream)
        thread.join()
        return seen

    events = asyncio.run(main())
    assert "".join(e.text for e in events[:-1]) == "0123456789" * 5
    assert events[-1] == Finish("length", 1, 50)


def test_an_answer_not_streamed_comes_as_one_piece_with_its_finish():
    async def main():
        loop = asyncio.get_running_loop()
        stream = Stream(loop, whole=True)
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counted(*args):
            nonlocal wakeups
            wakeups += 1
            return original(*args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]

        def engine():  # the reader is awaiting all along: a streamed answer would wake it 30 times
            for i in range(30):
                stream.put(Token(str(i % 10), [i]))
            stream.put(Finish("length", 1, 30))

        thread = threading.Thread(target=engine)
        reading = asyncio.ensure_future(read(stream))
        await asyncio.sleep(0)
        thread.start()
        events = await reading
        thread.join()
        return events, wakeups

    events, wakeups = asyncio.run(main())
    assert events == [Token("0123456789" * 3, list(range(30))), Finish("length", 1, 30)]
    assert wakeups == 1
