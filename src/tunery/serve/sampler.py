"""What a row does to its logits before a token is chosen: OpenAI's `logit_bias`,
`frequency_penalty` and `presence_penalty`, the `json_object` constraint, and the log-probabilities
it reports.

    rules = LogitRules.of(sampling, vocab_size, device)     # None when the request asks for none
    logits = rules.apply(logits)                           # (vocab,) one row's last logits
    rules.count(token)                                     # after the token is chosen

Penalties follow OpenAI's definition: logit[j] -= count[j] * frequency + (count[j] > 0) * presence,
counted over the tokens generated so far (not the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunery.serve import json_prefix

CANDIDATES = 64  # tokens tried per step, best first, before the JSON constraint looks further
SEARCHED = 4096  # tokens tried at most per step


class LogitRules:
    def __init__(self, bias: dict[int, float], frequency: float, presence: float, vocab: int, device):
        self.frequency, self.presence = frequency, presence
        self.bias: torch.Tensor | None = None
        if bias:
            self.bias = torch.zeros(vocab, device=device)
            ids = torch.tensor(list(bias), device=device)
            self.bias[ids] = torch.tensor(list(bias.values()), device=device)
        self.counts = torch.zeros(vocab, device=device) if (frequency or presence) else None

    @classmethod
    def of(cls, sampling, vocab: int, device) -> LogitRules | None:
        if not (sampling.logit_bias or sampling.frequency_penalty or sampling.presence_penalty):
            return None
        bias = dict(sampling.logit_bias)
        return cls(bias, sampling.frequency_penalty, sampling.presence_penalty, vocab, device)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.bias is not None:
            logits = logits + self.bias[: logits.shape[-1]]
        if self.counts is not None:
            counts = self.counts[: logits.shape[-1]]
            logits = logits - counts * self.frequency - (counts > 0).float() * self.presence
        return logits

    def count(self, token: int) -> None:
        if self.counts is not None and token < self.counts.shape[0]:
            self.counts[token] += 1


@dataclass
class TokenLogprob:
    """One generated token's log-probability and its most likely alternatives (OpenAI's shape)."""

    token: str
    logprob: float
    top: list[tuple[str, float]]


def logprobs_of(logits: torch.Tensor, token: torch.Tensor, top: int):
    """(chosen token's logprob, top values, top ids): tensors, read to the host by the row later."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logprobs.topk(top) if top else (logprobs[:0], token[None][:0])
    return logprobs[token], values, ids


class JsonConstraint:
    """Keeps a row's answer the start of one JSON object; once the object is closed, only EOS."""

    def __init__(self, tokenizer, eos: set[int]):
        self.tokenizer, self.eos = tokenizer, eos
        self.state: json_prefix.State | None = json_prefix.START

    @property
    def complete(self) -> bool:
        return self.state is not None and json_prefix.complete(self.state)

    def piece(self, tokens: list[int], token: int, text: str) -> str:
        return self.tokenizer.decode([*tokens, token], skip_special_tokens=True)[len(text) :]

    def allowed(self, tokens: list[int], text: str, order: list[int], first: bool) -> list[int]:
        """The candidates (in `order`, best first) that keep the answer a JSON prefix; with
        `first`, only the best of them."""
        if self.complete:
            return [min(self.eos)] if self.eos else []
        fits = []
        for token in order:
            if token in self.eos:
                continue
            piece = self.piece(tokens, token, text)
            if piece and "\ufffd" not in piece and json_prefix.advance_text(self.state, piece) is not None:
                fits.append(token)
                if first:
                    break
        return fits

    def accept(self, piece: str) -> None:
        self.state = json_prefix.advance_text(self.state, piece)


def constrained_choice(row, logits: torch.Tensor) -> int:
    """The best (greedy) or a sampled token among those the JSON constraint allows."""
    constraint: JsonConstraint = row.json
    text = row.text()
    order = logits.argsort(descending=True)
    allowed: list[int] = []
    start, size = 0, CANDIDATES
    while start < min(order.shape[0], SEARCHED) and not allowed:  # most steps: the first chunk
        allowed = constraint.allowed(row.tokens, text, order[start : start + size].tolist(), row.greedy)
        start, size = start + size, size * 8
    if not allowed:  # nothing near the top continues the JSON: end the answer rather than search on
        return min(constraint.eos) if constraint.eos else int(order[0])
    if row.greedy or len(allowed) == 1:
        return allowed[0]
    kept = torch.full_like(logits, float("-inf"))
    index = torch.tensor(allowed, device=logits.device)
    kept[index] = logits[index].float()
    return int(row.sample(kept))
