"""Cross-entropy computed only where labels are supervised.

The language-model head is the widest matrix of a small model (SmolLM2:
576 x 49,152) and its logits the largest activation. Transformers computes them
for every position; we run the model's body, keep the hidden states whose next
token carries loss, and apply the head to those alone. On chat data, where most
tokens are prompt, this saves most of the head's work and memory.

When the head is frozen (LoRA and the other adapter methods; tied embeddings
too), `frozen_head_cross_entropy` goes further: it walks the supervised
positions in chunks, and for each chunk computes the logits, the loss and the
gradient with respect to the hidden states (softmax - one-hot) @ W at once, then
drops the logits. Backward is a multiplication. No [N, V] logits tensor outlives
its chunk, so peak memory does not grow with the vocabulary, and no FLOP is
spent twice. Written here rather than taken from Liger because Liger does not
run on a CPU; on CUDA with Liger installed the idea is the same.
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
    if parts is not None or "position_ids" in inputs:
        # No KV cache in training: with one, transformers skips reading packed rows' position ids
        # as example boundaries, and packed examples would attend to each other.
        inputs["use_cache"] = False
    if parts is None:
        # Prompt tuning returns logits for its virtual tokens too, in front: keep the last T.
        logits = model(**inputs).logits[:, -labels.shape[1] :][:, :-1][keep]
    else:
        body, head = parts
        hidden = body(**inputs).last_hidden_state[:, :-1]  # [B, T-1, H]
        if _is_frozen_linear(head):
            return frozen_head_cross_entropy(hidden[keep], head, targets[keep]), int(keep.sum())
        logits = head(hidden[keep])  # [N, V], N = supervised tokens
    loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


HEAD_CHUNK = 1024  # supervised positions per chunk: [1024, 49152] fp32 logits are 200 MB


def _is_frozen_linear(head) -> bool:
    return (
        type(head) is torch.nn.Linear
        and not head.weight.requires_grad
        and (head.bias is None or not head.bias.requires_grad)
    )


def frozen_head_cross_entropy(
    hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor
) -> torch.Tensor:
    """Summed cross-entropy of `head(hidden)` against `targets`, chunked; `head` must be frozen.

    hidden [N, H], targets [N]; returns a scalar whose gradient reaches `hidden` only.
    """
    return _FrozenHeadCrossEntropy.apply(hidden, head.weight, head.bias, targets)


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets):
        want_grad = ctx.needs_input_grad[0]
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.shape[0], HEAD_CHUNK):
            chunk, target = hidden[start : start + HEAD_CHUNK], targets[start : start + HEAD_CHUNK]
            rows = torch.arange(len(target), device=chunk.device)
            logits = F.linear(chunk, weight, bias).float()  # [n, V]
            picked = logits[rows, target]
            # The softmax in the logits' own memory: logsumexp would allocate two more [n, V] tensors.
            top = logits.amax(dim=-1, keepdim=True)
            exps = logits.sub_(top).exp_()
            sums = exps.sum(dim=-1, keepdim=True)
            total += (top.squeeze(1) + sums.log().squeeze(1) - picked).sum()
            if want_grad:
                # d loss / d logits = softmax - one_hot.
                probs = exps.div_(sums)
                probs[rows, target] -= 1.0
                grad_hidden[start : start + HEAD_CHUNK] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad_hidden)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_output.to(grad_hidden.dtype), None, None, None


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
