"""The running batch's helpers: prefill groups by prompt length, batched sampling that draws the
same tokens as each row alone, an answer's text grown piece by piece, owners taking turns and
sharing the batch."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

import pytest
import torch

from tunery.serve.detokenize import AnswerText
from tunery.serve.engine import Engine, take_turns
from tunery.serve.scheduler import by_owner, sample_rows, similar_lengths


def fake_row(length: int, owner: str = ""):
    return SimpleNamespace(request=SimpleNamespace(prompt=[0] * length, owner=owner))


def test_prompts_of_similar_length_prefill_together_and_long_ones_apart():
    rows = [fake_row(n) for n in (35, 100, 33, 40, 95, 12)]
    groups = [[len(r.request.prompt) for r in group] for group in similar_lengths(rows)]
    assert groups == [[12], [33, 35, 40], [95, 100]]


def test_one_owners_prompts_never_join_the_prefill_another_owners_first_token_waits_for():
    rows = [fake_row(n, owner) for n, owner in ((33, "victim"), (34, "flood"), (35, "flood"), (40, "victim"))]
    owned = [[(r.request.owner, len(r.request.prompt)) for r in rows] for rows in by_owner(rows)]
    assert owned == [[("victim", 33), ("victim", 40)], [("flood", 34), ("flood", 35)]]


def test_an_owners_share_of_the_batch_shrinks_to_an_equal_split_while_others_are_there():
    engine = Engine(max_batch=32)
    assert engine.share(1) == engine.max_share == 28  # alone: all but a few rows kept for newcomers
    assert [engine.share(n) for n in (2, 4, 40)] == [16, 8, 1]


def test_an_owner_counts_as_present_between_its_requests_for_a_moment():
    engine = Engine(share_memory_s=0.2)
    assert engine._active_owners({"flood", "victim"}) == 2
    assert engine._active_owners({"flood"}) == 2  # the victim's next chat is on its way
    time.sleep(0.25)
    assert engine._active_owners({"flood"}) == 1


def sampling_row(seed: int, temperature: float, top_p: float):
    generator = torch.Generator().manual_seed(seed)
    sampling = SimpleNamespace(temperature=temperature, top_p=top_p)
    return SimpleNamespace(request=SimpleNamespace(sampling=sampling), generator=generator)


def one_by_one(row, logits: torch.Tensor) -> int:
    """What a row alone drew before sampling was batched: softmax, nucleus, torch.multinomial."""
    sampling = row.request.sampling
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p
        probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1, generator=row.generator)[0])


def test_a_batched_sample_draws_each_rows_token_as_it_would_alone():
    settings = [(0.7, 1.0), (1.0, 0.9), (1.3, 0.5), (0.2, 1.0), (1.0, 0.05), (2.0, 0.99)]
    batched, alone = [], []
    for step in range(40):
        logits = torch.randn(len(settings), 397, generator=torch.Generator().manual_seed(step)) * 4
        if step == 0:
            rows = [sampling_row(seed, t, p) for seed, (t, p) in enumerate(settings)]
            copies = [sampling_row(seed, t, p) for seed, (t, p) in enumerate(settings)]
        batched += sample_rows(rows, logits).tolist()
        alone += [one_by_one(copy, logits[i]) for i, copy in enumerate(copies)]
    assert batched == alone
    assert len(set(batched)) > 20, "the rows really sampled"


def test_answer_text_is_the_whole_decode_at_every_token(tiny_tokenizer):
    text = AnswerText(tiny_tokenizer)
    assert text.stream is not None, "a byte-level tokenizer grows the text piece by piece"
    rng = random.Random(0)
    for _ in range(40):
        text, tokens = AnswerText(tiny_tokenizer), []
        for _ in range(60):  # random ids: split characters, lone bytes, special tokens
            tokens.append(rng.randrange(len(tiny_tokenizer)))
            assert text.after(tokens) == tiny_tokenizer.decode(tokens, skip_special_tokens=True)


def test_answer_text_decodes_whole_where_pieces_could_change_earlier_text():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "fox": 4, ".": 5}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()  # "##aff" joins the word before it
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    text, tokens = AnswerText(tokenizer), []
    assert text.stream is None
    for token in (4, 1, 2, 3, 5):
        tokens.append(token)
        assert text.after(tokens) == tokenizer.decode(tokens, skip_special_tokens=True)
    assert text.after(tokens) == "fox unaffable."


def request(owner: str, name: str):
    return SimpleNamespace(owner=owner, name=name)


@pytest.mark.parametrize(
    ("running", "order"),
    [
        ({}, ["f1", "v1", "f2", "v2", "f3"]),  # no one running: first come, first in each turn
        ({"flood": 28, "victim": 0}, ["v1", "f1", "v2", "f2", "f3"]),  # the lighter owner first
    ],
)
def test_owners_take_turns_the_lightest_first(running, order):
    from collections import Counter

    arrivals = [request("flood", "f1"), request("flood", "f2"), request("victim", "v1")]
    arrivals += [request("flood", "f3"), request("victim", "v2")]
    assert [r.name for r in take_turns(arrivals, Counter(running))] == order


def test_step_costs_give_the_rows_that_step_within_the_slowdown_of_a_lone_row():
    from tunery.serve.engine import StepCosts

    costs = StepCosts()
    assert costs.rows_within(1.5, 32) == 32  # nothing measured yet: the equal split alone limits
    for rows, seconds in ((1, 0.070), (2, 0.085), (3, 0.090), (5, 0.123), (9, 0.161), (17, 0.160)):
        costs.record(rows, seconds)
    assert costs.rows_within(1.5, 32) == 2  # 2-3 rows: 0.085 s (1.2x); 4-7 rows 0.123 s (1.8x) too slow
    assert costs.rows_within(3.0, 32) == 16 and costs.rows_within(3.0, 8) == 8
    costs.record(1, 0.170)  # a moving average: one slow step moves it a tenth of the way
    assert costs.seconds[1] == pytest.approx(0.080)


def test_while_others_are_there_an_owner_gets_the_rows_that_step_fast_enough():
    from tunery.serve.engine import StepCosts

    cpu = StepCosts({1: 0.070, 2: 0.085, 3: 0.123, 4: 0.161, 5: 0.160, 6: 0.201})
    gpu = StepCosts({1: 0.010, 2: 0.010, 3: 0.011, 4: 0.011, 5: 0.012, 6: 0.013})
    engine = Engine(max_batch=32)
    assert engine.share(1, cpu) == engine.share(1, gpu) == 28  # alone: costs do not matter
    assert (engine.share(2, cpu), engine.share(2, gpu)) == (1, 16)
    assert Engine(max_batch=32, contended_slowdown=None).share(2, cpu) == 16  # the equal split alone
