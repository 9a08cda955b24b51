"""Packing a batch of pairs into one row, and the reference log-probs computed once before training.

    batch = collate_sides(pairs)          # one row: p+c₁, p+r₁, p+c₂, p+r₂, … each attending to itself
    batch = collate_sides(pairs, share_prompts=True)   # p+c₁, r₁, p+c₂, r₂, …: r attends to p+r
    fill_reference(model, parts, pairs, model_id="…/smollm2", batch_size=8)   # sets pair.reference

The reference is the model as it starts: a PEFT model with its adapter switched off (the
base, or the merged SFT model a run starts from), a full/freeze model before its first step.
Its log-probs are cached by `data.preference_tokens.reference_key` (token ids: the data, the
tokenizer and the template; and the model), so a rerun or a resume reads them from disk.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch

from tunery.data.preference_tokens import EncodedPreference, read_reference, reference_key, write_reference
from tunery.data.tokenize import IGNORE, Encoded

log = logging.getLogger("tunery.training")


def collate_sides(examples: Sequence[EncodedPreference], share_prompts: bool = False) -> dict:
    """Every side of every example end to end in one row [1, T], and which hidden state predicts which
    answer token (all tensors).

    With `share_prompts` a pair's prompt goes through the body once: the row holds prompt + chosen,
    then the rejected answer alone, whose attention prepends the prompt's keys (`prefix_lengths`, read
    by nn/varlen_attention.py) and whose positions continue after the prompt. The result is exactly
    that of the two full sides, for a pair's prompt tokens fewer (29% fewer tokens on the example
    pairs). Use it only with that attention (`shares_prompts(model)`).

    logit_index / target_ids / target_side [N]: the answer tokens, the row position whose hidden
    state predicts each, and its sequence; reference [S] (NaN when not computed yet); desirable [B]
    for unpaired rows; n_sequences: S (2 per pair, 1 per unpaired row).
    """
    row = _Row()
    for example in examples:
        sides = example.sides()
        chosen_start = row.add(sides[0], side=row.n_sequences)
        if len(sides) == 2:
            shared = shared_prompt_length(*sides) if share_prompts else 0
            row.add(sides[1], side=row.n_sequences, prefix=shared, prefix_start=chosen_start)
    batch = row.tensors()
    references = [value for e in examples for value in (e.reference or [float("nan")] * len(e.sides()))]
    batch["reference"] = torch.tensor(references, dtype=torch.float64)
    if examples and examples[0].desirable is not None:
        batch["desirable"] = torch.tensor([bool(e.desirable) for e in examples])
    return batch


def shared_prompt_length(chosen: Encoded, rejected: Encoded) -> int:
    """The leading tokens both sides have alike and neither trains on; 0 when nothing would be left."""
    limit = min(len(chosen.input_ids), len(rejected.input_ids)) - 1
    n = 0
    while (
        n < limit
        and chosen.input_ids[n] == rejected.input_ids[n]
        and chosen.labels[n] == IGNORE
        and rejected.labels[n] == IGNORE
    ):
        n += 1
    return n


class _Row:
    """The packed row as it grows: tokens, positions, segments and the answer tokens' predictors."""

    def __init__(self) -> None:
        self.input_ids: list[int] = []
        self.position_ids: list[int] = []
        self.labels: list[int] = []
        self.bounds: list[int] = [0]
        self.prefixes: list[int] = []
        self.logit_index: list[int] = []
        self.target_ids: list[int] = []
        self.target_side: list[int] = []
        self.n_sequences = 0

    def add(self, tokens: Encoded, side: int, prefix: int = 0, prefix_start: int = 0) -> int:
        """Append `tokens` without its first `prefix` (the segment at `prefix_start` holds them) as
        sequence `side`; returns where its segment starts."""
        start, ids, labels = len(self.input_ids), tokens.input_ids, tokens.labels
        self.input_ids += ids[prefix:]
        self.position_ids += range(prefix, len(ids))
        self.labels += labels[prefix:] if prefix else [IGNORE, *labels[1:]]
        self.bounds.append(len(self.input_ids))
        self.prefixes.append(prefix)
        for j in range(max(prefix, 1), len(ids)):
            if labels[j] != IGNORE:
                # token j is predicted at position j - 1: in the shared prompt for the first answer token
                self.logit_index.append(prefix_start + j - 1 if j - 1 < prefix else start + j - 1 - prefix)
                self.target_ids.append(ids[j])
                self.target_side.append(side)
        self.n_sequences += 1
        return start

    def tensors(self) -> dict:
        as_row = lambda values: torch.tensor([values], dtype=torch.long)  # noqa: E731
        bounds = torch.tensor(self.bounds, dtype=torch.int32)
        batch = {
            "input_ids": as_row(self.input_ids), "position_ids": as_row(self.position_ids),
            "labels": as_row(self.labels), "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds,
            "logit_index": torch.tensor(self.logit_index, dtype=torch.long),
            "target_ids": torch.tensor(self.target_ids, dtype=torch.long),
            "target_side": torch.tensor(self.target_side, dtype=torch.long),
            "n_sequences": torch.tensor(self.n_sequences),
        }  # fmt: skip
        if any(self.prefixes):
            batch["prefix_lengths"] = torch.tensor(self.prefixes, dtype=torch.int32)
        return batch


def shares_prompts(model) -> bool:
    """Whether `model` attends with nn/varlen_attention.py, the one attention that reads `prefix_lengths`."""
    from tunery.nn.varlen_attention import ATTENTION

    model = getattr(model, "module", model)  # DDP
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == ATTENTION


def fill_reference(
    model, parts, examples: Sequence[EncodedPreference], model_id: str, batch_size: int
) -> None:
    """Set `reference` on every example: from the cache when the same data and model were seen."""
    if not examples:
        return
    key = reference_key(examples, model_id)
    values = read_reference(key, len(examples))
    if values is None:
        log.info("reference log-probs: computing for %d rows (adapter off, once)", len(examples))
        values = reference_logps(model, parts, examples, batch_size)
        write_reference(key, values)
    for example, value in zip(examples, values, strict=True):
        example.reference = value


@torch.no_grad()
def reference_logps(
    model, parts, examples: Sequence[EncodedPreference], batch_size: int
) -> list[list[float]]:
    """Summed answer log-probs of each side under the starting weights, in eval mode, float64 on the host."""
    from tunery.nn.preference_loss import sequence_logps

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    share = shares_prompts(model)
    values: list[list[float]] = []
    try:
        with _adapter_off(model):
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                batch = {k: v.to(device) for k, v in collate_sides(chunk, share).items()}
                logps = sequence_logps(model, parts, batch)[0].double().tolist()
                for example in chunk:
                    n = len(example.sides())
                    values.append(logps[:n])
                    logps = logps[n:]
    finally:
        model.train(was_training)
    return values


def _adapter_off(model):
    """PEFT's `disable_adapter()` for an adapter model; nothing for full/freeze (their weights are the start)."""
    from peft import PeftModel

    return model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()
