"""Packing a batch of pairs into one row, and the reference log-probs computed once before training.

    batch = collate_sides(pairs)          # one row: p+c₁, p+r₁, p+c₂, p+r₂, … each attending to itself
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

from tunery.data.batching import collate_packed
from tunery.data.preference_tokens import EncodedPreference, read_reference, reference_key, write_reference

log = logging.getLogger("tunery.training")


def collate_sides(examples: Sequence[EncodedPreference]) -> dict:
    """Every side of every example end to end in one row [1, T], and per-sequence facts (all tensors).

    segment [T]: the sequence of each position; reference [S] (NaN when not computed yet);
    desirable [B] for unpaired rows; n_sequences: S.
    """
    sides = [side for example in examples for side in example.sides()]
    batch = collate_packed(sides)
    for name in ("max_length_q", "max_length_k"):
        batch.pop(name)  # ints; the varlen attention reads the boundaries alone
    lengths = torch.tensor([len(side.input_ids) for side in sides])
    batch["segment"] = torch.repeat_interleave(torch.arange(len(sides)), lengths)
    batch["n_sequences"] = torch.tensor(len(sides))
    references = [value for e in examples for value in (e.reference or [float("nan")] * len(e.sides()))]
    batch["reference"] = torch.tensor(references, dtype=torch.float64)
    if examples and examples[0].desirable is not None:
        batch["desirable"] = torch.tensor([bool(e.desirable) for e in examples])
    return batch


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
    values: list[list[float]] = []
    try:
        with _adapter_off(model):
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                batch = {k: v.to(device) for k, v in collate_sides(chunk).items()}
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
