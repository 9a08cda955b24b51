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
    engine.batch_sizes.clear()
    streams = [engine.submit(t, prompt, greedy) for t, prompt in jobs]  # arrive within one window
    together = [answer(stream) for stream in streams]
    assert max(engine.batch_sizes) == len(jobs), "all nine requests should run as one batch"
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


def test_a_request_arriving_mid_generation_joins_the_running_batch(engine, tiny_model_dir, two_runs):
    base, beta = Target.for_base(str(tiny_model_dir)), Target.for_run(two_runs[1])
    long = Sampling(max_tokens=120, temperature=0)  # the bare tiny model runs to the length limit
    short = Sampling(max_tokens=4, temperature=0)
    first_prompt = engine.encode_chat(base, [{"role": "user", "content": PROMPTS[2]}])
    second_prompt = engine.encode_text(beta, "item 5")  # shorter: its cache row is padded on joining
    alone = [
        answer(engine.submit(base, first_prompt, long)),
        answer(engine.submit(beta, second_prompt, short)),
    ]
    engine.batch_sizes.clear()
    first = engine.submit(base, first_prompt, long).events()
    pieces = [next(first)]  # the first is generating now
    second = answer(engine.submit(beta, second_prompt, short))
    pieces += list(first)
    together = ["".join(e.text for e in pieces if isinstance(e, Token)), second[0]]
    assert alone[0][1].completion_tokens == 120, "the first should still be generating when the second comes"
    assert max(engine.batch_sizes) == 2, "the second request ran beside the first"
    assert together == [text for text, _ in alone]


def test_with_one_adapter_slot_a_request_for_another_adapter_waits_for_it(tiny_model_dir, two_runs):
    engine = Engine(max_adapters=1, window_s=0.05).start()
    try:
        targets = [Target.for_run(run) for run in two_runs]
        prompt = engine.encode_text(targets[0], "item 3")
        greedy = Sampling(max_tokens=6, temperature=0)
        alone = [answer(engine.submit(t, prompt, greedy))[0] for t in targets]
        together = [answer(s)[0] for s in [engine.submit(t, prompt, greedy) for t in targets]]
        assert together == alone and alone[0] != alone[1]
    finally:
        engine.stop()


SYSTEM = {"role": "system", "content": "Extract the order as compact JSON and say nothing else."}


def test_a_prompt_sharing_a_cached_start_prefills_only_the_rest_and_answers_the_same(
    tiny_model_dir, two_runs
):
    targets = [Target.for_base(str(tiny_model_dir)), Target.for_run(two_runs[0])]
    greedy = Sampling(max_tokens=8, temperature=0)
    answers = {}
    for prefix_tokens in (0, 1024):
        engine = Engine(prefix_tokens=prefix_tokens).start()
        try:
            prompts = [
                engine.encode_chat(targets[0], [SYSTEM, {"role": "user", "content": p}]) for p in PROMPTS
            ]
            answers[prefix_tokens] = [
                answer(engine.submit(t, p, greedy))[0] for t in targets for p in prompts
            ]
            hits = engine.slot(targets[0]).batch.prefixes.hits if prefix_tokens else 0
        finally:
            engine.stop()
    assert hits >= 4 * 8, "the later prompts of each model reuse the system prompt's keys and values"
    assert answers[1024] == answers[0]


def test_a_prompt_learning_request_answers_through_the_shared_generate_loop(tiny_model_dir):
    """`generate_alone` (prefix/prompt tuning) streams what `data.generation.generate_tokens` gives."""
    from collections import deque

    import torch
    from transformers import AutoModelForCausalLM

    from tunery.data.generation import generate_tokens
    from tunery.models import load_tokenizer
    from tunery.serve.engine import Request, Slot, generate_alone
    from tunery.serve.stream import Stream

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = load_tokenizer(str(tiny_model_dir))
    slot = Slot(model, tokenizer, None, deque())
    prompt = tokenizer("item 3 quantity 2", add_special_tokens=False)["input_ids"]
    request = Request(
        Target.for_base(str(tiny_model_dir)), prompt, Sampling(max_tokens=6, temperature=0), Stream()
    )
    generate_alone(slot, slot.row(request))
    text, finish = answer(request.stream)
    ids = torch.tensor([prompt])
    expected = generate_tokens(model, ids, torch.ones_like(ids), 6, pad_token_id=tokenizer.pad_token_id)[0]
    assert finish.completion_tokens == len(expected)  # generate stops at an EOS, as the row does
    assert text == tokenizer.decode(expected, skip_special_tokens=True)


def test_on_a_cpu_the_engine_thread_leaves_one_core_to_the_http_side():
    """Two OpenMP threads on two busy cores stall every step while one of them is descheduled
    (a flood's steps took 300 ms instead of 3): the engine's ops use every core but one."""
    import os
    import threading

    import torch

    from tunery.serve.engine import set_cpu_threads

    before, seen = torch.get_num_threads(), []

    def engine_thread(threads):
        set_cpu_threads("cpu", threads)
        seen.append(torch.get_num_threads())

    try:
        for threads in (None, 3):
            thread = threading.Thread(target=engine_thread, args=(threads,))
            thread.start()
            thread.join()
    finally:
        torch.set_num_threads(before)
    assert seen == [max(1, len(os.sched_getaffinity(0)) - 1), 3]


def test_an_owner_over_its_share_waits_aside_while_another_is_served_and_answers_the_same(tiny_model_dir):
    import time

    engine = Engine(max_batch=8, window_s=0.01, share_memory_s=0.05).start()
    try:
        base = Target.for_base(str(tiny_model_dir))
        long, short = Sampling(max_tokens=120, temperature=0), Sampling(max_tokens=6, temperature=0)
        flood_prompts = [engine.encode_chat(base, [{"role": "user", "content": p}]) for p in PROMPTS]
        victim_prompt = engine.encode_text(base, "item 5")
        alone = [answer(engine.submit(base, p, long, owner="flood"))[0] for p in flood_prompts]
        alone.append(answer(engine.submit(base, victim_prompt, short, owner="victim"))[0])
        slot = engine.slot(base)
        # Measured as on a CPU: two rows step as fast as one, three take far longer.
        slot.costs.seconds = {1: 1.0, 2: 1.1, 3: 5.0, 4: 9.0}
        assert engine.share(2, slot.costs) == 1 and engine.share(1, slot.costs) == engine.max_share

        time.sleep(
            0.1
        )  # the victim's last answer is past: the flood starts alone, with every row it asks for
        floods = [engine.submit(base, p, long, owner="flood").events() for p in flood_prompts]
        firsts = [next(events) for events in floods]  # all three are generating now
        engine.batch_sizes.clear()
        victim = answer(engine.submit(base, victim_prompt, short, owner="victim"))
        sizes = list(engine.batch_sizes)
        steps_beside_the_victim = sizes[sizes.index(4) + 1 :]  # after it joined the flood's three rows
        together = ["".join(e.text for e in [first, *rest] if isinstance(e, Token))
                    for first, rest in zip(firsts, map(list, floods), strict=True)]  # fmt: skip
    finally:
        engine.stop()
    assert steps_beside_the_victim and max(steps_beside_the_victim) <= 2, steps_beside_the_victim
    assert [*together, victim[0]] == alone, "rows set aside and taken back answer as if never moved"
    assert not slot.aside.rows


def test_a_run_started_from_another_is_served_on_that_run_merged_as_it_was_trained(
    engine, two_runs, tmp_path
):
    from tests.serve.conftest import train_tiny_run
    from tunery.inference import starting_model
    from tunery.run import Run

    child = train_tiny_run(two_runs[0], tmp_path, "child", seed=3)  # `model:` a run, as `ft:` bases are
    target = Target.for_run(child)
    assert target.base == starting_model(Run.open(child).config)[0] != str(two_runs[0])
    prompt = engine.encode_chat(target, [{"role": "user", "content": PROMPTS[0]}])
    text, finish = answer(engine.submit(target, prompt, Sampling(max_tokens=4, temperature=0)))
    assert finish.completion_tokens == 4, text
