"""Continuous batching: every running sequence of one model advances one token per step; new requests
join between steps and finished ones leave at once.

    batch = RunningBatch(model, tokenizer.pad_token_id, bank)   # bank: the model's AdapterBank, or None
    batch.admit(rows)       # prefill the new rows together, then join their cache rows to the running ones
    while batch.rows:
        batch.step()        # one token for every row; rows that are done leave the batch

Why our own loop rather than `model.generate` or transformers' continuous batching
(`generation/continuous_batching`, paged attention, no notion of a per-request adapter): each row
has its own adapter (routed through `AdapterBank`), sampling settings, seed, stop strings and
length, and streams its text as it grows. New rows of similar prompt length prefill together
(`similar_lengths`: little padding); a prompt that starts like a recent one of the same adapter
prefills only the rest (`PrefixCache`). The rows share one `DynamicCache`, left padded: a row's cache holds
its real tokens at the right end, the attention mask hides the padding and explicit positions
count real tokens only, so a row gets the same greedy tokens in any batch as alone. Joining pads
the shorter cache on the left; leaving selects the remaining rows and drops the columns that are
padding for all of them.

Host syncs: one per step, the chosen tokens (`tolist()`), which the stop strings and streaming
need; masks, positions and next inputs stay on the model's device, and the cache layers
(`GrowingLayer`) grow in place instead of being copied at every step.

Per-row work is kept off the step's critical path, since one owner's full batch would otherwise
make every step of another owner's row cost as much (issue 21): greedy rows take one argmax over
the batch, rows with only temperature/top_p one batched sample (`sample_rows`: each row still
draws from its own seeded generator, the same tokens as alone), and a row's text grows by the new
piece (`detokenize.AnswerText`) instead of being decoded whole at every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch.nn import functional
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tunery.serve.detokenize import AnswerText
from tunery.serve.prefix_cache import PrefixCache
from tunery.serve.sampler import JsonConstraint, LogitRules, TokenLogprob, constrained_choice, logprobs_of
from tunery.serve.stream import Failure, Finish, Token


class Row:
    """One request's answer as it grows: stop strings, EOS, length, and the text not yet streamed;
    its logit rules (bias, penalties), JSON constraint and log-probabilities when asked."""

    def __init__(self, request, tokenizer, eos: set[int], device):
        self.request, self.tokenizer, self.eos = request, tokenizer, eos
        self.tokens: list[int] = []
        self.sent, self.done = 0, False
        sampling = request.sampling
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(sampling.seed % 2**64 if sampling.seed is not None else torch.seed())
        self.rules: LogitRules | None = None  # made at the first logits, which give the vocabulary size
        self.json = JsonConstraint(tokenizer, eos) if sampling.json_mode else None
        self.measured: tuple | None = None  # the last chosen token's logprob tensors, read in `add`
        self.logprobs: list[TokenLogprob] = []  # entries not yet streamed
        self.decoded = ""  # the text after the last token
        self.answer = AnswerText(tokenizer)
        self.hold = max((len(s) - 1 for s in sampling.stop), default=0)  # a stop string's start, held back
        # how `choose` picks this row's tokens: the batch's argmax, the batched sample, or its own logits
        self.kind = (GREEDY if self.greedy else SAMPLED) if sampling.plain else OWN

    @property
    def cancelled(self) -> bool:
        return self.request.stream.cancelled

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """One row's logits (vocab,) after its logit bias and penalties."""
        sampling = self.request.sampling
        if self.rules is None and not (
            sampling.logit_bias or sampling.frequency_penalty or sampling.presence_penalty
        ):
            return logits
        if self.rules is None:
            self.rules = LogitRules.of(sampling, logits.shape[-1], logits.device)
        return self.rules.apply(logits) if self.rules is not None else logits

    def pick(self, logits: torch.Tensor, greedy_choice: torch.Tensor) -> torch.Tensor | int:
        """The next token from this row's adjusted logits; records its logprobs when asked."""
        if self.json is not None:
            token: torch.Tensor | int = constrained_choice(self, logits)
        else:
            token = greedy_choice if self.greedy else self.sample(logits)
        top = self.request.sampling.logprobs
        if top is not None:
            self.measured = logprobs_of(logits, torch.as_tensor(token, device=logits.device), top)
        return token

    @property
    def adapter(self) -> str:
        return self.request.target.adapter

    @property
    def cached(self) -> int:
        """Real tokens in this row's cache once the last chosen token has been fed back."""
        return len(self.request.prompt) + len(self.tokens) - 1

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """A token (0-d tensor, on the logits' device) from one row's last logits (vocab,)."""
        return sample_rows([self], logits[None])[0]

    @property
    def greedy(self) -> bool:
        return self.request.sampling.temperature < 1e-5

    def add(self, token: int) -> None:
        sampling = self.request.sampling
        self.tokens.append(token)
        if self.rules is not None:
            self.rules.count(token)
        if token in self.eos:
            return self.finish("stop", self.decoded)  # the text before the EOS
        self._measure(token)
        text = self.answer.after(self.tokens)
        if self.json is not None:
            self.json.accept(text[len(self.decoded) :])
        self.decoded = text
        for stop in sampling.stop:
            if (at := text.find(stop, max(0, self.sent - len(stop)))) >= 0:
                return self.finish("stop", text[:at])
        if len(self.tokens) >= sampling.max_tokens:
            return self.finish("length", text)
        # hold back what could be the start of a stop string, and half a multi-byte character
        safe = (len(text) if not text.endswith("\ufffd") else len(text.rstrip("\ufffd"))) - self.hold
        if safe > self.sent:
            self.request.stream.put(Token(text[self.sent : safe], self._take_logprobs()))
            self.sent = safe

    def _measure(self, token: int) -> None:
        """The chosen token's logprob and alternatives, read to the host (only rows that asked)."""
        if self.measured is None:
            return
        chosen, values, ids = self.measured
        self.measured = None
        name = self.piece
        top = [(name(i), v) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
        self.logprobs.append(TokenLogprob(name(token), float(chosen), top))

    def piece(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def _take_logprobs(self) -> list[TokenLogprob]:
        taken, self.logprobs = self.logprobs, []
        return taken

    def text(self) -> str:
        """The whole answer decoded again (the JSON constraint and `generate_alone`; `add` grows it)."""
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def finish(self, reason: str, text: str) -> None:
        if len(text) > self.sent or self.logprobs:
            self.request.stream.put(Token(text[self.sent :], self._take_logprobs()))
        self.request.stream.put(Finish(reason, len(self.request.prompt), len(self.tokens)))
        self.done = True

    def fail(self, message: str) -> None:
        if not self.done:
            self.request.stream.put(Failure(message))
            self.done = True


GREEDY, SAMPLED, OWN = "greedy", "sampled", "own"  # Row.kind


def choose(rows: Sequence[Row], logits: torch.Tensor) -> torch.Tensor:
    """Next token per row (batch,) on the logits' device: one argmax for the greedy rows, one
    batched sample for those with only temperature/top_p; rows with logit rules, a JSON
    constraint or logprobs pick from their own logits."""
    chosen = logits.argmax(-1)
    sampled = [i for i, row in enumerate(rows) if row.kind is SAMPLED]
    if sampled:
        chosen[sampled] = sample_rows([rows[i] for i in sampled], logits[sampled])
    for i, row in enumerate(rows):
        if row.kind is OWN:
            own = row.adjust(logits[i])
            chosen[i] = row.pick(own, own.argmax(-1))
    return chosen


def sample_rows(rows: Sequence[Row], logits: torch.Tensor) -> torch.Tensor:
    """A token per row (batch,) from its logits (batch, vocab) at its temperature and top_p.

    The same token as `torch.multinomial(probs, 1, generator=row.generator)` row by row, which
    for one sample is argmax(probs / q) with q ~ Exp(1) drawn from the generator (torch's own
    fast path): so the softmax, the nucleus and the argmax run once for the batch and only the
    noise is drawn per row, from each row's seeded generator."""
    device = logits.device
    temperature = torch.tensor([row.request.sampling.temperature for row in rows], device=device)
    probs = torch.softmax(logits.float() / temperature[:, None], dim=-1)
    nucleus = [i for i, row in enumerate(rows) if row.request.sampling.top_p < 1.0]
    if nucleus:
        top_p = torch.tensor([rows[i].request.sampling.top_p for i in nucleus], device=device)
        part = probs[nucleus]
        sorted_probs, order = part.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p[:, None]  # always keeps the top token
        probs[nucleus] = part.scatter(1, order, sorted_probs.masked_fill(outside, 0.0))
    noise = torch.empty_like(probs)
    for i, row in enumerate(rows):
        noise[i].exponential_(generator=row.generator)
    return (probs / noise).argmax(-1)


class RunningBatch:
    """The sequences one model is generating; `admit` and `step` are called from the engine thread only."""

    def __init__(self, model, pad_token_id: int, bank=None, sizes=None, prefixes: PrefixCache | None = None):
        self.model, self.pad, self.bank, self.prefixes = model, pad_token_id, bank, prefixes
        self.device = next(model.parameters()).device
        self.rows: list[Row] = []
        self.cache: Any = None  # DynamicCache, (batch, kv heads, width, head dim) per layer
        self.mask: torch.Tensor | None = None  # (batch, width) 1 for real tokens
        self.positions: torch.Tensor | None = None  # (batch, 1) the next token's position
        self.next_ids: torch.Tensor | None = None  # (batch, 1) the last chosen tokens, fed next step
        self.sizes = sizes if sizes is not None else []  # rows per forward pass, for tests and the benchmark

    @property
    def adapters(self) -> set[str]:
        return {row.adapter for row in self.rows}

    @torch.inference_mode()
    def admit(self, rows: list[Row]) -> None:
        """Prefill the new rows (an owner's of similar length together, groups in the order of
        `rows`: the engine puts the lightest owner's first), choose their first tokens and join them to
        the batch."""
        fresh = []
        for row in rows:
            shared, layers = (
                self.prefixes.longest(row.adapter, row.request.prompt) if self.prefixes else (0, None)
            )
            if layers is None:
                fresh.append(row)
            else:
                self._first_tokens([row], self._prefill_rest(row, shared, layers))
        place = {id(row): i for i, row in enumerate(rows)}
        groups = [group for owned in by_owner(fresh) for group in similar_lengths(owned)]
        for group in sorted(groups, key=lambda group: min(place[id(r)] for r in group)):
            self._first_tokens(group, self._prefill(group))
        self.sizes.append(len(self.rows))
        self._retire_finished()

    @staticmethod
    def _first_tokens(rows: list[Row], chosen: torch.Tensor) -> None:
        for row, token in zip(rows, chosen.tolist(), strict=True):
            row.add(token)

    def _prefill(self, rows: list[Row]) -> torch.Tensor:
        """Left padded prompts through the model into a cache of their own, joined to the batch's."""
        width = max(len(r.request.prompt) for r in rows)
        padded = [[self.pad] * (width - len(r.request.prompt)) + r.request.prompt for r in rows]
        ids = torch.tensor(padded, device=self.device)
        mask = torch.tensor(
            [[0] * (width - len(r.request.prompt)) + [1] * len(r.request.prompt) for r in rows],
            device=self.device,
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real tokens only, as the row would see alone
        cache = growing_cache()
        logits = self._forward(rows, ids, mask, positions, cache)
        chosen = choose(rows, logits)
        self._remember(rows, cache)
        self._join(rows, cache, mask, positions[:, -1:] + 1, chosen[:, None])
        return chosen

    def _prefill_rest(self, row: Row, shared: int, layers) -> torch.Tensor:
        """One prompt whose first `shared` tokens' keys and values come from the prefix cache."""
        prompt = row.request.prompt
        cache = growing_cache()
        for keys, values in layers:
            layer = GrowingLayer()
            layer.lazy_initialization(keys[None], values[None])
            layer.replace(keys[None], values[None])  # read only: the next update copies them out
            cache.layers.append(layer)
        ids = torch.tensor([prompt[shared:]], device=self.device)
        mask = torch.ones(1, len(prompt), dtype=torch.long, device=self.device)
        positions = torch.arange(shared, len(prompt), device=self.device)[None]
        chosen = choose([row], self._forward([row], ids, mask, positions, cache))
        self._remember([row], cache)
        self._join([row], cache, mask, positions[:, -1:] + 1, chosen[:, None])
        return chosen

    def _remember(self, rows: list[Row], cache) -> None:
        """Each row's prompt keys and values (its right end in the left padded cache) for later prompts."""
        if self.prefixes is None:
            return
        for i, row in enumerate(rows):
            if not self.prefixes.wants(row.adapter, row.request.prompt):
                continue
            length = len(row.request.prompt)
            layers = [
                (layer.keys[i, :, -length:].clone(), layer.values[i, :, -length:].clone())
                for layer in cache.layers
            ]
            self.prefixes.store(row.adapter, row.request.prompt, layers)

    @torch.inference_mode()
    def step(self) -> None:
        """One token for every running row; rows whose client went away leave first."""
        self.drop_cancelled()
        if not self.rows:
            return
        self.sizes.append(len(self.rows))
        mask, positions, next_ids = self._running()
        self.mask = torch.cat([mask, torch.ones_like(next_ids)], dim=1)
        logits = self._forward(self.rows, next_ids, self.mask, positions, self.cache)
        chosen = choose(self.rows, logits)
        self.next_ids, self.positions = chosen[:, None], positions + 1
        self._take(chosen.tolist(), self.rows)

    def drop_cancelled(self) -> None:
        """Rows whose client went away leave."""
        if any(row.cancelled for row in self.rows):
            for row in self.rows:
                row.done = row.done or row.cancelled
            self._retire()

    def fail_all(self, message: str) -> None:
        for row in self.rows:
            row.fail(message)
        self._retire()

    # -- internals -------------------------------------------------------------------------------
    def _running(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The running rows' mask, positions and next ids: set whenever there are rows."""
        assert self.mask is not None and self.positions is not None and self.next_ids is not None, "no rows"
        return self.mask, self.positions, self.next_ids

    def _forward(self, rows, ids, mask, positions, cache) -> torch.Tensor:
        routing = self.bank.routing([r.adapter for r in rows]) if self.bank is not None else nullcontext()
        with routing:
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1,
            )  # fmt: skip
        return out.logits[:, -1, :]  # (batch, vocab)

    def _take(self, tokens: list[int], rows: list[Row]) -> None:
        for row, token in zip(rows, tokens, strict=True):
            row.add(token)
        self._retire_finished()

    def _retire_finished(self) -> None:
        if any(row.done for row in self.rows):
            self._retire()

    def _join(self, rows, cache, mask, positions, next_ids) -> None:
        if not self.rows:
            self.rows, self.cache, self.mask = rows, cache, mask
            self.positions, self.next_ids = positions, next_ids
            return
        my_mask, my_positions, my_next_ids = self._running()
        old, new = my_mask.shape[1], mask.shape[1]
        width = max(old, new)
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.replace(
                torch.cat([pad_left(mine.keys, width - old), pad_left(theirs.keys, width - new)]),
                torch.cat([pad_left(mine.values, width - old), pad_left(theirs.values, width - new)]),
            )
        self.mask = torch.cat(
            [functional.pad(my_mask, (width - old, 0)), functional.pad(mask, (width - new, 0))]
        )
        self.positions = torch.cat([my_positions, positions])
        self.next_ids = torch.cat([my_next_ids, next_ids])
        self.rows = self.rows + rows

    def _retire(self) -> None:
        """Drop finished rows, and the leading columns that no remaining row uses."""
        self._keep([i for i, row in enumerate(self.rows) if not row.done])

    def split(self, leaving: list[Row]) -> RunningBatch:
        """Move `leaving` (rows of this batch) with their keys and values into a batch of their own,
        which is not stepped until it is `merge`d back: a row set aside waits where it stands."""
        chosen = {id(row) for row in leaving}
        moved = [i for i, row in enumerate(self.rows) if id(row) in chosen]
        aside = RunningBatch(self.model, self.pad, self.bank, self.sizes, self.prefixes)
        if moved:
            aside.rows, aside.cache = list(self.rows), growing_cache()
            aside.mask, aside.positions, aside.next_ids = self._running()
            for layer in self.cache.layers:
                copy = GrowingLayer()
                copy.lazy_initialization(layer.keys, layer.values)
                copy.replace(layer.keys, layer.values)
                aside.cache.layers.append(copy)
            aside._keep(moved)
            self._keep([i for i, row in enumerate(self.rows) if id(row) not in chosen])
        return aside

    def merge(self, other: RunningBatch) -> None:
        """Take back the rows of a batch `split` from this one (or any batch of the same model)."""
        if other.rows:
            mask, positions, next_ids = other._running()
            self._join(other.rows, other.cache, mask, positions, next_ids)
            other.rows, other.cache = [], None
            other.mask = other.positions = other.next_ids = None

    def _keep(self, keep: list[int]) -> None:
        """Keep the rows at `keep` (and the leading columns that any of them uses)."""
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.cache = self.mask = self.positions = self.next_ids = None
            return
        mask, positions, next_ids = self._running()
        index = torch.tensor(keep, device=self.device)
        unused = mask.shape[1] - max(row.cached for row in self.rows)  # known on the host: no sync
        for layer in self.cache.layers:
            layer.replace(layer.keys[index, :, unused:], layer.values[index, :, unused:])
        self.mask = mask[index, unused:]
        self.positions, self.next_ids = positions[index], next_ids[index]


def by_owner(rows: list[Row]) -> list[list[Row]]:
    """Rows per owner, owners in the order of their first row: one owner's prompts never pad or
    lengthen the prefill that another's first token waits for."""
    owned: dict[str, list[Row]] = {}
    for row in rows:
        owned.setdefault(row.request.owner, []).append(row)
    return list(owned.values())


def similar_lengths(rows: list[Row]) -> list[list[Row]]:
    """Rows grouped by prompt length so that padding wastes little prefill (a 100-token prompt
    among 35-token ones would triple the work of its group)."""
    groups: list[list[Row]] = []
    for row in sorted(rows, key=lambda r: len(r.request.prompt)):
        length = len(row.request.prompt)
        shortest = len(groups[-1][0].request.prompt) if groups else 0
        if groups and length - shortest <= max(8, shortest // 4):
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def pad_left(states: torch.Tensor, columns: int) -> torch.Tensor:
    """(batch, heads, width, dim) -> (batch, heads, columns + width, dim), zeros in front."""
    return functional.pad(states, (0, 0, columns, 0)) if columns else states


def growing_cache() -> DynamicCache:
    """A DynamicCache whose layers grow in place."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    return cache


class GrowingLayer(DynamicLayer):
    """Keys and values in buffers with room to spare, so that a decode step writes one column in
    place rather than copying the whole layer (`torch.cat` in DynamicLayer.update)."""

    room = 32  # spare columns allocated whenever a buffer is outgrown

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.replace(key_states[..., :0, :], value_states[..., :0, :])
        width = self.keys.shape[-2] + key_states.shape[-2]
        if self._storage[0].shape[-2] < width:
            self._storage = tuple(widen(kept, width + self.room) for kept in (self.keys, self.values))
        for buffer, new in zip(self._storage, (key_states, value_states), strict=True):
            buffer[..., width - new.shape[-2] : width, :] = new
        self.keys, self.values = (buffer[..., :width, :] for buffer in self._storage)
        return self.keys, self.values

    def replace(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """New contents (rows joined or left): no spare room until the next update."""
        self.keys, self.values = keys, values
        self._storage = (keys, values)


def widen(states: torch.Tensor, width: int) -> torch.Tensor:
    """A buffer `width` columns wide starting with `states` (batch, heads, columns, dim)."""
    buffer = states.new_empty(*states.shape[:-2], width, states.shape[-1])
    buffer[..., : states.shape[-2], :] = states
    return buffer
