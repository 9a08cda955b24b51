"""The batch plan: deterministic, every example once, lengths grouped only within a small window."""

from __future__ import annotations

import random

from tunery.data.batching import GROUPING_WINDOW, plan_batches


def test_every_example_once_and_the_same_plan_for_the_same_seed_and_epoch():
    lengths = [random.Random(1).randint(10, 900) for _ in range(100)]
    plan = plan_batches(lengths, 8, seed=3, epoch=0)
    assert sorted(i for batch in plan for i in batch) == list(range(100))
    assert plan == plan_batches(lengths, 8, seed=3, epoch=0)
    assert plan != plan_batches(lengths, 8, seed=3, epoch=1)


def test_grouped_batches_waste_less_padding_than_random_ones():
    rng = random.Random(0)
    lengths = [rng.randint(10, 900) for _ in range(256)]

    def padding(plan):
        return sum(
            len(batch) * max(lengths[i] for i in batch) - sum(lengths[i] for i in batch) for batch in plan
        )

    grouped = padding(plan_batches(lengths, 8, seed=0, epoch=0))
    unsorted = padding(plan_batches(lengths, 8, seed=0, epoch=0, group_by_length=False))
    assert grouped < 0.6 * unsorted


def test_lengths_are_sorted_only_within_a_window_so_steps_still_mix_length_bands():
    # distinct lengths: a whole-epoch sort would make every batch 8 consecutive length ranks
    lengths = random.Random(0).sample(range(10, 2000), 256)
    rank = {index: r for r, index in enumerate(sorted(range(256), key=lambda i: lengths[i]))}
    plan = plan_batches(lengths, 8, seed=0, epoch=0)
    consecutive = sum(1 for batch in plan if max(rank[i] for i in batch) - min(rank[i] for i in batch) == 7)
    assert GROUPING_WINDOW * 8 < 256
    assert consecutive < len(plan) // 2
