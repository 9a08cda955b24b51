"""The running batch's helpers: prefill groups by prompt length."""

from __future__ import annotations

from types import SimpleNamespace

from tunery.serve.scheduler import similar_lengths


def fake_row(length: int):
    return SimpleNamespace(request=SimpleNamespace(prompt=[0] * length))


def test_prompts_of_similar_length_prefill_together_and_long_ones_apart():
    rows = [fake_row(n) for n in (35, 100, 33, 40, 95, 12)]
    groups = [[len(r.request.prompt) for r in group] for group in similar_lengths(rows)]
    assert groups == [[12], [33, 35, 40], [95, 100]]
