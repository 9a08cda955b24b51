"""The KV cache of recent prompts, per adapter, so that a new prompt sharing their start (the chat
template's system prompt) prefills only the rest.

    prefixes = PrefixCache(max_tokens=1024)
    shared, layers = prefixes.longest(adapter, prompt)     # (0, None) on a miss
    prefixes.store(adapter, prompt, [(keys, values), ...]) # per layer (heads, len(prompt), head dim)

A prompt's prefill is compute-bound and, for short chat answers, most of a request's work; the
prompts of one deployment mostly start alike. The keys and values depend on the adapter (LoRA on
k_proj/v_proj and on every layer below), so entries are per adapter. Stored prompts are few
(bounded by `max_tokens`, least recently used out), so a linear scan finds the longest common start.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (kv heads, tokens, head dim)


class PrefixCache:
    def __init__(self, max_tokens: int = 1024, min_shared: int = 8):
        self.max_tokens, self.min_shared = max_tokens, min_shared
        self.entries: OrderedDict[tuple[str, tuple[int, ...]], Layers] = OrderedDict()
        self.tokens = 0
        self.hits = 0  # tokens not prefilled thanks to the cache, for tests and the benchmark

    def longest(self, adapter: str, prompt: list[int]) -> tuple[int, Layers | None]:
        """The longest stored start of `prompt` for this adapter (at most all but its last token)."""
        best, found = 0, None
        for key in self.entries:
            if key[0] == adapter and (n := shared_start(key[1], prompt)) > best:
                best, found = n, key
        best = min(best, len(prompt) - 1)
        if found is None or best < self.min_shared:
            return 0, None
        self.entries.move_to_end(found)
        self.hits += best
        return best, [(k[:, :best], v[:, :best]) for k, v in self.entries[found]]

    def wants(self, adapter: str, prompt: list[int]) -> bool:
        return (adapter, tuple(prompt)) not in self.entries and len(prompt) <= self.max_tokens

    def store(self, adapter: str, prompt: list[int], layers: Layers) -> None:
        if not self.wants(adapter, prompt):
            return
        key = (adapter, tuple(prompt))
        self.entries[key] = layers
        self.tokens += len(prompt)
        while self.tokens > self.max_tokens:
            (_, oldest), _ = self.entries.popitem(last=False)
            self.tokens -= len(oldest)


def shared_start(a: tuple[int, ...], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
