"""Per-row token statistics of a causal LM, batched and packed exactly as training batches them.

    stats = score_examples(model, parts, encoded, "packed", pad_id, max_tokens=8192)
    stats[0].loss, stats[0].contradiction, stats[0].predicted   # one RowStats per example, in order

Why not `nn.loss.mean_loss` (what `tunery eval` runs): it returns one number for the whole set and
pads every batch. The audit needs each row's own loss and how the model disagrees with it, so this
runs the training collators (`data.batching.collate`, padding-free packed rows with per-example
attention when the run trained packed) and the loss's trick of applying the head to supervised
positions only, in chunks, under `torch.inference_mode`; each token's statistics are then summed
into its example by an index (`owner`). Auditing costs one forward pass per row per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from tunery.data.batching import collate, split_by_tokens
from tunery.data.tokenize import IGNORE, Encoded
from tunery.nn.loss import HEAD_CHUNK

# Columns of the per-token statistics, summed per example.
NLL, P_LABEL, P_TOP, AGREE, CONTRA = range(5)


@dataclass
class RowStats:
    """One example under one model, averaged over its supervised tokens."""

    tokens: int  # supervised tokens (those that carry loss)
    loss: float  # mean negative log-likelihood of the label tokens
    label_prob: float  # mean probability of the label token
    top_prob: float  # mean probability of the model's own top token
    agreement: float  # share of tokens where the model's top token is the label
    contradiction: float  # mean of p(top) - p(label): 0 where they agree, near 1 where it confidently differs
    predicted: list[int] = field(default_factory=list)  # the top token at each supervised position


def score_examples(
    model, parts, examples: Sequence[Encoded], strategy: str, pad_id: int, max_tokens: int | None
) -> list[RowStats]:
    """Each example's statistics, in the order given; passes of at most `max_tokens` tokens.

    `parts` is `nn.loss.causal_lm_parts(model)`: (body, head), or None for the plain forward.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    sums = torch.zeros((len(examples), 5), dtype=torch.float64)
    counts = torch.zeros(len(examples), dtype=torch.long)
    predicted: list[list[int]] = [[] for _ in examples]
    model.eval()
    done = 0
    with torch.inference_mode():
        for piece in split_by_tokens([examples[i] for i in order], max_tokens, strategy):
            indices = torch.tensor(order[done : done + len(piece)])
            done += len(piece)
            batch = collate(piece, strategy, pad_id)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            stats, top, owner = token_stats(model, parts, batch)
            rows = indices[owner.cpu()]
            sums.index_add_(0, rows, stats.double().cpu())
            counts.index_add_(0, rows, torch.ones_like(rows))
            # A row's positions are contiguous in a pass (packed or padded), so its tokens are one slice.
            kept, sizes = torch.unique_consecutive(rows, return_counts=True)
            for row, tokens in zip(kept.tolist(), top.cpu().split(sizes.tolist()), strict=True):
                predicted[row].extend(tokens.tolist())
    return [_row(sums[i], int(counts[i]), predicted[i]) for i in range(len(examples))]


def _row(sums: torch.Tensor, n: int, predicted: list[int]) -> RowStats:
    mean = (sums / max(n, 1)).tolist()
    return RowStats(n, mean[NLL], mean[P_LABEL], mean[P_TOP], mean[AGREE], mean[CONTRA], predicted)


def token_stats(model, parts, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every supervised position of the batch: stats [N, 5], the top token [N], its example [N]."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = targets != IGNORE  # [B, T-1]: position t predicts token t+1
    owner = example_index(batch, labels.shape)[:, 1:][keep]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs["use_cache"] = False  # with a cache, transformers ignores packed rows' position ids
    if parts is None:  # prompt methods: their virtual tokens come first in the logits, keep the last T
        logits = model(**inputs).logits[:, -labels.shape[1] :][:, :-1][keep]
        stats, top = per_token(logits, targets[keep])
        return stats, top, owner
    body, head = parts
    hidden = body(**inputs).last_hidden_state[:, :-1][keep]  # [N, H]
    chunks = [
        per_token(head(hidden[start : start + HEAD_CHUNK]), targets[keep][start : start + HEAD_CHUNK])
        for start in range(0, hidden.shape[0], HEAD_CHUNK)
    ]  # [HEAD_CHUNK, V] logits at a time, as in training's loss
    if not chunks:
        return torch.zeros((0, 5)), torch.zeros(0, dtype=torch.long), owner
    return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]), owner


def per_token(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [n, V], targets [n] -> ([n, 5] columns NLL..CONTRA, the top token [n])."""
    log_probs = logits.float().log_softmax(-1)
    label_log_prob = log_probs.gather(1, targets[:, None]).squeeze(1)
    top_log_prob, top = log_probs.max(-1)
    p_label, p_top = label_log_prob.exp(), top_log_prob.exp()
    agree = (top == targets).float()
    return torch.stack([-label_log_prob, p_label, p_top, agree, p_top - p_label], dim=1), top


def example_index(batch: dict, shape: torch.Size) -> torch.Tensor:
    """[B, T]: which example of the batch each position belongs to (packed: by the row's boundaries)."""
    bounds = batch.get("cu_seq_lens_q")
    if bounds is not None:
        lengths = torch.diff(bounds.long())
        return torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)[None, :]
    return torch.arange(shape[0], device=batch["labels"].device)[:, None].expand(shape)
