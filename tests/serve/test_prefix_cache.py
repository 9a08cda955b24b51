"""The prefix cache: longest shared start per adapter, never the whole prompt, bounded in tokens."""

from __future__ import annotations

import torch

from tunery.serve.prefix_cache import PrefixCache


def kv(length: int):
    """One layer's keys and values, position i holding the value i."""
    states = torch.arange(length, dtype=torch.float32).view(1, length, 1)
    return [(states, states + 100)]


def test_the_longest_shared_start_of_the_same_adapter_is_found_and_sliced():
    cache = PrefixCache(max_tokens=100, min_shared=3)
    cache.store("a", [1, 2, 3, 4, 5, 6], kv(6))
    cache.store("a", [1, 2, 9, 9], kv(4))
    shared, layers = cache.longest("a", [1, 2, 3, 4, 7, 7])
    assert shared == 4 and layers[0][0].flatten().tolist() == [0, 1, 2, 3]
    assert cache.longest("b", [1, 2, 3, 4, 7]) == (0, None), "another adapter has other keys and values"
    assert cache.longest("a", [1, 2, 8]) == (0, None), "two shared tokens are below min_shared"
    assert cache.longest("a", [1, 2, 3, 4, 5, 6])[0] == 5, "the last token is always computed, for its logits"


def test_the_least_recently_used_prompts_leave_beyond_max_tokens():
    cache = PrefixCache(max_tokens=10, min_shared=2)
    cache.store("a", [1, 1, 1, 1], kv(4))
    cache.store("a", [2, 2, 2, 2], kv(4))
    cache.longest("a", [1, 1, 1, 5])  # [1, 1, 1, 1] is now the most recently used
    cache.store("a", [3, 3, 3, 3], kv(4))
    assert [prompt for _, prompt in cache.entries] == [(1, 1, 1, 1), (3, 3, 3, 3)] and cache.tokens == 8
