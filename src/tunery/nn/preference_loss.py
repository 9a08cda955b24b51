"""Preference losses over sequence log-probabilities, and those log-probabilities from one packed row.

Every loss takes per-example tensors and returns `PreferenceTerms` (a loss per example and
the implicit rewards the metrics read), so the task sums them and the loop divides by the
pairs of the whole step, as SFT divides by tokens. Conventions, with `pc`/`pr` the policy's
summed log-probs of the chosen/rejected answer, `rc`/`rr` the reference's, `h` the margin:

- dpo:   h = (pc - rc) - (pr - rr); loss = -(1-ε) log σ(βh) - ε log σ(-βh)   (ε: label smoothing, cDPO)
- ipo:   loss = (h - 1/(2β))²  (summed log-probs, as in the IPO paper)
- simpo: loss = -log σ(β (āc - ār) - γ), ā the mean log-prob per answer token (no reference)
- orpo:  loss = -āc + λ · -log σ(log odds(āc) - log odds(ār)), odds(p) = p / (1-p) (no reference)
- kto:   r = p - ref, z = max(0, mean r of the batch) (detached);
         loss = w_d (1 - σ(β (r - z))) for desirable rows, w_u (1 - σ(β (z - r))) for the others

Rewards are β(p - ref) for the losses with a reference, β·ā for simpo and orpo. Written
here rather than taken from TRL because TRL's live inside its trainer; each is a few lines
and tests/nn/test_preference_loss.py holds them to hand-computed values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

REFERENCE_LOSSES = ("dpo", "ipo", "kto")


@dataclass
class PreferenceTerms:
    losses: torch.Tensor  # [B]
    chosen_rewards: torch.Tensor  # [B] (unpaired: the row's reward)
    rejected_rewards: torch.Tensor | None = None  # [B]; None for unpaired rows


def dpo_loss(pc, pr, rc, rr, beta: float, label_smoothing: float = 0.0) -> PreferenceTerms:
    margin = beta * ((pc - rc) - (pr - rr))
    losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    return PreferenceTerms(losses, beta * (pc - rc).detach(), beta * (pr - rr).detach())


def ipo_loss(pc, pr, rc, rr, beta: float) -> PreferenceTerms:
    margin = (pc - rc) - (pr - rr)
    losses = (margin - 1 / (2 * beta)) ** 2
    return PreferenceTerms(losses, beta * (pc - rc).detach(), beta * (pr - rr).detach())


def simpo_loss(mean_c, mean_r, beta: float, gamma: float) -> PreferenceTerms:
    losses = -F.logsigmoid(beta * (mean_c - mean_r) - gamma)
    return PreferenceTerms(losses, beta * mean_c.detach(), beta * mean_r.detach())


def orpo_loss(mean_c, mean_r, beta: float, orpo_lambda: float) -> PreferenceTerms:
    # log odds(p) = log p - log(1 - p), with log p = ā < 0; log1p(-exp(ā)) is the stable log(1 - p).
    log_odds = (mean_c - torch.log1p(-torch.exp(mean_c))) - (mean_r - torch.log1p(-torch.exp(mean_r)))
    losses = -mean_c - orpo_lambda * F.logsigmoid(log_odds)
    return PreferenceTerms(losses, beta * mean_c.detach(), beta * mean_r.detach())


def kto_loss(
    policy, reference, desirable, beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> PreferenceTerms:
    ratio = policy - reference
    kl = ratio.mean().clamp(min=0).detach()
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    return PreferenceTerms(torch.where(desirable, good, bad), beta * ratio.detach())


def sequence_logps(model, parts, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-prob of the answer tokens of each packed sequence, and their counts: ([S], [S]).

    `batch` is one packed row from `tasks.preference_reference.collate_sides`: the head runs on
    the positions in `logit_index` alone (nn/loss.py's idea), each predicting `target_ids` of
    sequence `target_side`.
    """
    names = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "prefix_lengths")
    inputs = {k: batch[k] for k in names if k in batch}
    where, targets = batch["logit_index"], batch["target_ids"]
    if parts is None:
        logits = model(**inputs, use_cache=False).logits[0][where]
    else:
        body, head = parts
        hidden = body(**inputs, use_cache=False).last_hidden_state[0]  # [T, H]
        logits = head(hidden[where])  # [N, V], N = answer tokens
    wide = torch.promote_types(logits.dtype, torch.float32)  # bf16 logits in fp32; fp64 stays fp64
    token_logps = logits.to(wide).log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
    side = batch["target_side"]
    n_sequences = int(batch["n_sequences"])
    sums = token_logps.new_zeros(n_sequences).index_add(0, side, token_logps)
    counts = torch.bincount(side, minlength=n_sequences).to(sums.dtype)
    return sums, counts
