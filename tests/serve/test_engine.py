"""The engine in-process: one base in memory, adapters batched together, LRU of adapters."""

from __future__ import annotations

import pytest

from tunery.serve.engine import BASE, Engine, Finish, Sampling, Target, Token

PROMPTS = ["item 3 quantity 2", "hello world", "item 1 quantity 4 and a longer question"]


def answer(stream) -> tuple[str, Finish]:
    events = list(stream.events())
    assert isinstance(events[-1], Finish)
    return "".join(e.text for e in events if isinstance(e, Token)), events[-1]


@pytest.fixture
def engine():
    running = Engine(max_adapters=2, window_s=0.05).start()
    yield running
    running.stop()


def test_a_mixed_adapter_batch_equals_each_request_alone(engine, tiny_model_dir, two_runs):
    targets = [Target.for_base(str(tiny_model_dir)), *(Target.for_run(run) for run in two_runs)]
    jobs = [(t, engine.encode_chat(t, [{"role": "user", "content": p}])) for t in targets for p in PROMPTS]
    greedy = Sampling(max_tokens=10, temperature=0)
    alone = [answer(engine.submit(t, prompt, greedy)) for t, prompt in jobs]
    streams = [engine.submit(t, prompt, greedy) for t, prompt in jobs]  # arrive within one window
    together = [answer(stream) for stream in streams]
    assert engine.batch_sizes[-1] == len(jobs), "all nine requests should run as one batch"
    assert [(text, f.completion_tokens) for text, f in together] == [
        (text, f.completion_tokens) for text, f in alone
    ]
    assert len(engine.slots) == 1, "one copy of the base weights serves all three"


def test_adapters_beyond_the_limit_evict_the_least_recently_used(engine, two_runs, tmp_path):
    import shutil

    third = tmp_path / "gamma"
    shutil.copytree(two_runs[0], third)  # same weights, a distinct adapter
    targets = [Target.for_run(run) for run in (*two_runs, third)]
    for target in targets:
        answer(
            engine.submit(target, engine.encode_text(target, "item"), Sampling(max_tokens=2, temperature=0))
        )
    slot = engine.slots[targets[0].slot]
    assert list(slot.adapters) == [targets[1].adapter, targets[2].adapter]
    assert targets[0].adapter != BASE
