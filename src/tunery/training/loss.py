"""Cross-entropy computed only where labels are supervised.

The language-model head is the widest matrix of a small model (SmolLM2:
576 x 49,152) and its logits the largest activation. Transformers computes them
for every position; we run the model's body, keep the hidden states whose next
token carries loss, and apply the head to those alone. On chat data, where most
tokens are prompt, this saves most of the head's work and memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tunery.data.tokenize import IGNORE, Encoded

# Configs that change logits after the head; for these the plain forward is used.
_LOGIT_POSTPROCESSING = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier_scale",
)


def causal_lm_parts(model) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(body, head) of a causal LM, PEFT-wrapped or not; None when logits need the full forward."""
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return None  # prefix/prompt/p-tuning add their tokens in PeftModel.forward, above the body
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = causal.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_POSTPROCESSING):
        return None
    body = getattr(causal, causal.base_model_prefix, None)
    head = causal.get_output_embeddings()
    if body is None or head is None:
        return None
    return body, head


def summed_loss(model, batch: dict, parts=None) -> tuple[torch.Tensor, int]:
    """Sum of token losses over supervised positions, and how many there were.

    The caller divides by the supervised tokens of the whole optimiser step, so
    gradient accumulation weighs every token equally whatever the batch split.
    `parts` is (body, head), None for the full forward, or a task's own loss
    (classification, seq2seq: an object with `summed_loss`, `collate` and `count`).
    """
    if hasattr(parts, "summed_loss"):
        return parts.summed_loss(model, batch)
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = targets != IGNORE
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if parts is None:
        # Prompt tuning returns logits for its virtual tokens too, in front: keep the last T.
        logits = model(**inputs).logits[:, -labels.shape[1] :][:, :-1][keep]
    else:
        body, head = parts
        hidden = body(**inputs).last_hidden_state[:, :-1]  # [B, T-1, H]
        logits = head(hidden[keep])  # [N, V], N = supervised tokens
    loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.no_grad()
def mean_loss(model, parts, examples: Sequence[Encoded], pad_id: int, batch_size: int = 8) -> float:
    """Mean loss per supervised token over a whole set, batched by length."""
    from tunery.data.batching import collate_padded

    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    collate = parts.collate if hasattr(parts, "summed_loss") else collate_padded
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    for start in range(0, len(ordered), batch_size):
        batch = {k: v.to(device) for k, v in collate(ordered[start : start + batch_size], pad_id).items()}
        loss_sum, n = summed_loss(model, batch, parts)
        total += loss_sum.item()
        count += n
    return total / max(count, 1)
