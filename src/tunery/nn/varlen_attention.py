"""Attention for packed rows: each example attends causally to itself alone, with no mask.

Packed batches lay a step's examples end to end in one row (data/batching.py), so no
token is padding. Transformers' SDPA path keeps the examples apart with a [T, T]
block-diagonal mask, which makes the kernel compute every block of the row (T² work
for a row of many short examples, and no causal skipping). Flash-attention's varlen
kernel avoids that, but it needs CUDA. This attention function does the same on any
device: it splits q/k/v at the example boundaries the collator passes
(`cu_seq_lens_q`, the same keyword flash-attention reads) and runs causal SDPA per
example, so the work is Σ lengthᵢ² / 2 and the result is exactly each example's
unpacked attention. Without boundaries (evaluation, generation, padded batches) it is
transformers' SDPA, mask included.

Registered with transformers' attention and mask interfaces under `ATTENTION`; models
use it through `attn_implementation`.
"""

from __future__ import annotations

import torch

ATTENTION = "tunery_varlen"


def register() -> str:
    """Make `attn_implementation="tunery_varlen"` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return ATTENTION


def varlen_attention_forward(module, query, key, value, attention_mask, **kwargs):
    """query [1, H, T, D], key/value [1, H_kv, T, D]; returns ([1, T, H, D], None) like transformers' SDPA.

    `prefix_lengths` [segments] (preference pairs sharing a prompt): a segment with n > 0 also
    attends to the first n keys of the segment before it, which precede it causally.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    prefixes = kwargs.pop("prefix_lengths", None)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
        kwargs.pop(name, None)
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)  # each example is causal whatever the caller passed for the row
    lengths, shared = _example_lengths(bounds, prefixes)
    keys, values = key.split(lengths, dim=2), value.split(lengths, dim=2)
    outputs = []
    for i, q in enumerate(query.split(lengths, dim=2)):
        k, v, n = keys[i], values[i], shared[i]
        if n:
            k, v = (
                torch.cat([keys[i - 1][:, :, :n], k], dim=2),
                torch.cat([values[i - 1][:, :, :n], v], dim=2),
            )
            visible = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(n)
            outputs.append(
                sdpa_attention_forward(module, q, k, v, visible[None, None], is_causal=False, **kwargs)[0]
            )
        else:
            outputs.append(sdpa_attention_forward(module, q, k, v, None, is_causal=True, **kwargs)[0])
    return torch.cat(outputs, dim=1), None


_last_bounds: list = [None, None, None]  # (cu_seq_lens, prefix_lengths, the host lists): one per forward


def _example_lengths(bounds: torch.Tensor, prefixes: torch.Tensor | None) -> tuple[list[int], list[int]]:
    """The examples' lengths and shared prefixes, read to the host once per forward rather than once per
    layer (a sync on a GPU): every layer gets the same tensors."""
    if _last_bounds[0] is not bounds or _last_bounds[1] is not prefixes:
        lengths = torch.diff(bounds).tolist()
        shared = prefixes.tolist() if prefixes is not None else [0] * len(lengths)
        _last_bounds[:] = [bounds, prefixes, (lengths, shared)]
    return _last_bounds[2]
