"""One copy of each base model in memory, many adapters on it, concurrent requests batched continuously.

    engine = Engine(max_adapters=8).start()
    target = Target.for_run("runs/a")                       # or Target.for_base("smollm2-135m-instruct")
    prompt = engine.encode_chat(target, [{"role": "user", "content": "Hi"}])
    for event in engine.submit(target, prompt, Sampling(max_tokens=32, temperature=0)).events():
        print(event)                                          # Token(text=...) ... Finish(...)
    engine.stop()

A background thread runs the loop: take the requests that arrived since the last step, start those
that fit (prefill, then join the running batch of their model: `scheduler.RunningBatch`), then one
decode step for every running sequence; finished ones leave at once and their tokens stream as they
come. A quiet engine waits `window_s` after the first request so that requests arriving together
prefill together. Owners (projects) take turns, the one with the fewest rows running first, and
none takes more than `max_share` of a batch, so a flood from one never makes another's row wait
for a free place, and that row prefills before the flood's next rows. On a CPU the engine's torch
ops use all cores but one (`threads`): the HTTP side keeps a core, and two OpenMP threads never
wait on each other while a busy machine has descheduled one of them (which stalled every step).

Plain LoRA adapters share their base model and run in one pass whatever the mix
(`grouped_lora.AdapterBank`, least recently used adapters give way beyond `max_adapters`). A prompt
that starts like a recent one of the same adapter (a shared system prompt) prefills only the rest
(`prefix_cache.PrefixCache`, `prefix_tokens` prompt tokens kept per model).

Adapters that cannot be grouped (DoRA, IA3, PiSSA, modules trained in full, full or partial
fine-tunes) get a model of their own, loaded with `tunery.inference.load_run_model`, batched the
same way; prefix/prompt tuning changes the cache, so those are served one request at a time with
`generate` (`tunery.data.generation.generate_tokens`, the loop chat and eval use too).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import torch

from tunery.data.generation import generate_tokens
from tunery.serve.grouped_lora import BASE, AdapterBank, groupable
from tunery.serve.prefix_cache import PrefixCache
from tunery.serve.scheduler import Row, RunningBatch
from tunery.serve.stream import Failure, Finish, Stream, Token

__all__ = ["BASE", "Engine", "Failure", "Finish", "Sampling", "Stream", "Target", "Token"]


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 16
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit), OpenAI's logit_bias
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: int | None = None  # None: none reported; k: the chosen token's and the k most likely
    json_mode: bool = False  # the answer is kept one JSON object (response_format json_object)

    @property
    def plain(self) -> bool:
        """Nothing but temperature and top_p: the batch's own argmax or a sample will do."""
        return (
            not (self.logit_bias or self.frequency_penalty or self.presence_penalty or self.json_mode)
            and self.logprobs is None
        )


@dataclass(frozen=True)
class Target:
    """What a model name serves: a base model, optionally with a run's adapter on it."""

    base: str  # what `resolve_model` loads: a directory, alias or hub id
    run_dir: Path | None = None
    shared: bool = True  # runs on the shared base (plain LoRA) rather than on a model of its own
    adapter_dir: Path | None = None  # the run's adapter/, or one of its checkpoints; None: the run's

    @classmethod
    def for_base(cls, name: str) -> Target:
        from tunery.models import resolve_model

        return cls(base=resolve_model(name))

    @classmethod
    def for_run(cls, run_dir: str | Path) -> Target:
        from tunery.inference import starting_model
        from tunery.run import Run

        run = Run.open(run_dir)
        if run.config.task == "classification":
            raise ValueError(f"{run.path} is a classification run; it has no text to generate")
        return cls(
            base=starting_model(run.config)[0],  # a run started from another: that one merged, as trained
            run_dir=run.path,
            shared=groupable(run.adapter_dir, run.config.method),
        )

    @classmethod
    def for_checkpoint(cls, run_dir: str | Path, folder: Path) -> Target:
        """A run's saved checkpoint, served like its final adapter (plain LoRA runs only: a bank
        replays it on the shared base)."""
        run = cls.for_run(run_dir)
        if not run.shared or not groupable(folder):
            raise ValueError("only checkpoints of plain LoRA runs are served; use the run's final model")
        return cls(base=run.base, run_dir=run.run_dir, adapter_dir=folder)

    @property
    def adapter_folder(self) -> Path:
        assert self.run_dir is not None, "only a run's target has an adapter"
        return self.adapter_dir or self.run_dir / "adapter"

    @property
    def adapter(self) -> str:
        """The adapter's name in its model's adapter bank."""
        if self.run_dir is None or not self.shared:
            return BASE
        return "a" + hashlib.sha1(str(self.adapter_folder.resolve()).encode()).hexdigest()[:12]

    @property
    def slot(self) -> str:
        """Requests with the same slot share one model and so one running batch."""
        return self.base if self.shared else f"{self.base}+{self.run_dir}"


@dataclass
class Request:
    target: Target
    prompt: list[int]
    sampling: Sampling
    stream: Stream
    owner: str = ""  # who asked (a project): admission takes turns between owners
    arrived: float = field(default_factory=time.monotonic)


class Slot:
    """A model in memory, its tokenizer and its running batch; a shared slot also has an adapter bank."""

    def __init__(self, model, tokenizer, bank: AdapterBank | None, sizes: deque, prefix_tokens: int = 0):
        self.model, self.tokenizer, self.bank = model, tokenizer, bank
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos.add(tokenizer.eos_token_id)
        config = getattr(model, "active_peft_config", None)
        self.prompt_learning = bool(config is not None and config.is_prompt_learning)
        self.batch = RunningBatch(
            model, tokenizer.pad_token_id, bank, sizes, PrefixCache(prefix_tokens) if prefix_tokens else None
        )
        self.aside = self.batch.split([])  # rows of an owner over its share, waiting while others are served
        self.costs = StepCosts()

    @property
    def rows(self) -> list[Row]:
        """Every row this model is generating, those set aside included."""
        return self.batch.rows + self.aside.rows

    @property
    def adapters(self) -> list[str]:
        """Loaded adapters, least recently used first."""
        return list(self.bank.slot_of) if self.bank is not None else []

    def row(self, request: Request) -> Row:
        return Row(request, self.tokenizer, self.eos, self.device)

    def make_room(self, adapter: str, adapter_folder: Path | None, starting: list[Row]) -> bool:
        """Load the adapter if needed; False while every adapter slot serves running rows."""
        if self.bank is None or adapter == BASE:
            return True
        if adapter in self.bank:
            self.bank.touch(adapter)
            return True
        in_use = self.batch.adapters | self.aside.adapters | {row.adapter for row in starting}
        if len(self.bank.slot_of) >= self.bank.capacity and all(name in in_use for name in self.bank.slot_of):
            return False
        assert adapter_folder is not None, "an adapter other than the base comes from a run"
        self.bank.load(adapter, adapter_folder, keep=in_use)
        return True


class Engine:
    def __init__(
        self,
        max_adapters: int = 8,
        max_batch: int = 32,
        window_s: float = 0.01,
        device: str = "auto",
        prefix_tokens: int = 1024,
        threads: int | None = None,
        share_memory_s: float = 1.0,
        contended_slowdown: float | None = 1.5,
    ):
        self.max_adapters, self.max_batch, self.window_s, self.device = (
            max_adapters,
            max_batch,
            window_s,
            device,
        )
        self.prefix_tokens = prefix_tokens  # prompt tokens whose keys/values are kept per model (0: none)
        self.threads = threads  # torch's intra-op threads on a CPU; None: every core but one
        self.share_memory_s = share_memory_s  # how long an owner counts as present after its last row
        self._seen: dict[str, float] = {}  # owner -> when it last had rows running or waiting
        # While several owners are there, a step may take at most this many times a lone row's step.
        self.contended_slowdown = contended_slowdown
        self._owners_now = 1
        self.slots: dict[str, Slot] = {}
        self._load_lock = threading.Lock()
        self._pending: list[Request] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batch_sizes: deque[int] = deque(
            maxlen=10_000
        )  # rows per forward pass, for tests and the benchmark

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="tunery-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- requests --------------------------------------------------------------------------------
    def slot(self, target: Target) -> Slot:
        """The target's model, loaded on first use (one copy of a base, whatever adapters use it)."""
        with self._load_lock:
            if target.slot not in self.slots:
                self.slots[target.slot] = self._load(target)
            return self.slots[target.slot]

    def encode_chat(self, target: Target, messages: list[dict]) -> list[int]:
        tokenizer = self.slot(target).tokenizer
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def context_length(self, target: Target) -> int | None:
        """The most positions the target's model takes (prompt and answer together), if it says."""
        return getattr(self.slot(target).model.config, "max_position_embeddings", None)

    def vocab_size(self, target: Target) -> int:
        """Token ids the model scores (its output layer's width)."""
        model = self.slot(target).model
        return model.get_output_embeddings().weight.shape[0]

    def encode_text(self, target: Target, text: str) -> list[int]:
        return self.slot(target).tokenizer(text)["input_ids"]

    def submit(
        self,
        target: Target,
        prompt: list[int],
        sampling: Sampling,
        loop: asyncio.AbstractEventLoop | None = None,
        owner: str = "",
        on_close=None,
        whole: bool = False,
    ) -> Stream:
        """Queue a request; `owner` takes turns with other owners, `on_close` runs when it ends;
        a `whole` answer (not streamed) comes as one piece with its finish."""
        request = Request(target, prompt, sampling, Stream(loop, on_close, whole), owner)
        with self._wake:
            self._pending.append(request)
            self._wake.notify()
        return request.stream

    # -- the scheduling loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        set_cpu_threads(self.device, self.threads)
        while (arrivals := self._arrivals()) is not None:
            self._admit(arrivals)
            for slot in list(self.slots.values()):
                try:
                    self._rebalance(slot)
                except Exception as err:  # fail its rows, never the engine thread every client waits on
                    for batch in (slot.aside, slot.batch):
                        batch.fail_all(f"{type(err).__name__}: {err}")
                if rows := len(slot.batch.rows):
                    started = time.perf_counter()
                    self._guarded(slot, slot.batch.step, slot.batch.rows)
                    slot.costs.record(rows, time.perf_counter() - started)
        message = "the server is stopping"
        for request in self._pending:
            request.stream.put(Failure(message))
        for slot in list(self.slots.values()):
            slot.batch.fail_all(message)
            slot.aside.fail_all(message)

    def _arrivals(self) -> list[Request] | None:
        """The requests that arrived since the last step; blocks while there is nothing to do."""
        with self._wake:
            idle = not any(slot.rows for slot in self.slots.values())
            while idle and not self._pending and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
        if idle:
            time.sleep(self.window_s)  # let requests that arrive together prefill together
        with self._wake:
            arrivals, self._pending = self._pending, []
        return arrivals

    def _admit(self, arrivals: list[Request]) -> None:
        """Start what fits (per model `max_batch` rows, `max_adapters` adapters in use, no owner above
        its share), owners taking turns; the rest waits, and requests whose client left are dropped."""
        starting: dict[str, list[Row]] = {}
        owners: dict[str, Counter[str]] = {}  # per model, each owner's rows running or starting
        waiting = []
        arrivals = [request for request in arrivals if not request.stream.cancelled]
        running = self._running_owners()
        self._owners_now = self._active_owners(set(running) | {request.owner for request in arrivals})
        for request in take_turns(arrivals, running):
            try:
                slot = self.slot(request.target)
                if slot.prompt_learning:
                    generate_alone(slot, slot.row(request))
                    continue
                key = request.target.slot
                rows = starting.setdefault(key, [])
                counts = owners.setdefault(key, Counter(row.request.owner for row in slot.rows))
                if not self._fits(slot, rows, counts, request, self.share(self._owners_now, slot.costs)):
                    waiting.append(request)
                    continue
                rows.append(slot.row(request))
                counts[request.owner] += 1
            except Exception as err:  # a model or adapter that cannot load fails its request, not the server
                request.stream.put(Failure(f"{type(err).__name__}: {err}"))
        with self._wake:
            self._pending = waiting + self._pending
        for key, rows in starting.items():
            if rows:
                slot = self.slots[key]
                self._guarded(slot, lambda slot=slot, rows=rows: slot.batch.admit(rows), rows)

    def _active_owners(self, present: set[str]) -> int:
        """Owners with rows running or waiting now, or within the last `share_memory_s`: a client
        that sends its next request as soon as one is answered counts between them too."""
        now = time.monotonic()
        self._seen.update(dict.fromkeys(present, now))
        self._seen = {owner: at for owner, at in self._seen.items() if now - at <= self.share_memory_s}
        return len(self._seen)

    def _running_owners(self) -> Counter[str]:
        return Counter(row.request.owner for slot in self.slots.values() for row in slot.rows)

    def _rebalance(self, slot: Slot) -> None:
        """An owner's rows over its share wait aside while other owners are served (the newest first:
        the older are nearer their end), and step again as soon as it is back within its share."""
        slot.aside.drop_cancelled()
        share = self.share(self._owners_now, slot.costs)
        stepping: Counter[str] = Counter()
        over = []
        for row in slot.batch.rows:
            stepping[row.request.owner] += 1
            if stepping[row.request.owner] > share:
                over.append(row)
        back = []
        for row in slot.aside.rows:
            if stepping[row.request.owner] < share:
                stepping[row.request.owner] += 1
                back.append(row)
        if over:
            slot.aside.merge(slot.batch.split(over))
        if back:
            slot.batch.merge(slot.aside.split(back))

    def _fits(self, slot: Slot, rows: list[Row], owners: Counter[str], request: Request, share: int) -> bool:
        """Room in the batch, within the owner's `share` (a few rows stay free for other owners, so a
        flood from one never makes another wait for its rows to finish), and an adapter slot."""
        if len(slot.rows) + len(rows) >= self.max_batch:
            return False
        if owners[request.owner] >= share:
            return False
        target = request.target
        return slot.make_room(target.adapter, target.adapter_folder if target.run_dir else None, rows)

    @property
    def max_share(self) -> int:
        """The most rows of one model's batch that one owner takes."""
        return max(1, self.max_batch - max(1, self.max_batch // 8))

    def share(self, owners: int, costs: StepCosts | None = None) -> int:
        """The rows one owner may run beside `owners - 1` others with rows running or waiting:
        `max_share` alone; while others are there an equal split of the batch, and of no more rows than
        step within `contended_slowdown` times a lone row's step (`costs`, measured on this model and
        machine): a flood's rows make every step of the others slower, so on a CPU, where a step's
        time grows with its rows, they get few; on a GPU, where it hardly does, many. Rows above it
        wait aside (`_rebalance`) and the owner starts no more until it is back within it."""
        if owners <= 1:
            return self.max_share
        rows = self.max_batch
        if costs is not None and self.contended_slowdown is not None:
            rows = costs.rows_within(self.contended_slowdown, self.max_batch)
        return max(1, min(self.max_share, rows // owners))

    @staticmethod
    def _guarded(slot: Slot, work, rows: list[Row]) -> None:
        """Run a prefill or step; if it breaks, its rows fail (and the batch, if they had joined it)."""
        try:
            work()
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            joined = any(row in slot.batch.rows for row in rows)
            for row in rows:
                row.fail(message)
            if joined:
                slot.batch.fail_all(message)

    def _load(self, target: Target) -> Slot:
        from tunery.data.tokenize import ensure_chat_template
        from tunery.models import load_causal_lm, pick_device, pick_dtype

        if not target.shared:
            from tunery.inference import load_run_model

            assert target.run_dir is not None, "only a run's target has a model of its own"

            model, tokenizer = load_run_model(target.run_dir, device=self.device)
            return Slot(model.eval(), tokenizer, None, self.batch_sizes, self.prefix_tokens)
        device = pick_device(self.device)
        model, tokenizer = load_causal_lm(target.base, device, pick_dtype("auto", device))
        ensure_chat_template(tokenizer)
        model.eval().requires_grad_(False)
        bank = AdapterBank(model, self.max_adapters)
        return Slot(model, tokenizer, bank, self.batch_sizes, self.prefix_tokens)


@dataclass
class StepCosts:
    """Seconds per decode step of one model by its rows: a moving average per power-of-two bucket
    (bucket b holds 2**(b-1) … 2**b - 1 rows)."""

    seconds: dict[int, float] = field(default_factory=dict)
    weight: float = 0.1  # of each new step in its bucket's average

    def record(self, rows: int, seconds: float) -> None:
        bucket = rows.bit_length()
        old = self.seconds.get(bucket)
        self.seconds[bucket] = seconds if old is None else old + self.weight * (seconds - old)

    def rows_within(self, slowdown: float, most: int) -> int:
        """The most rows (the smallest of a bucket, `most` at the most) whose step was measured at no
        more than `slowdown` times a lone row's; `most` until a lone row's step has been measured."""
        alone = self.seconds.get(1)
        if alone is None:
            return most
        fit = [1 << (bucket - 1) for bucket, seconds in self.seconds.items() if seconds <= slowdown * alone]
        return min(most, max(fit))


def take_turns(requests: list[Request], running: Counter[str] | None = None) -> list[Request]:
    """The requests with their owners taking turns (first of each, second of each, ...), each owner's
    own in arrival order, the owner with the fewest rows `running` first in every turn: one owner's
    hundred requests do not all go before another's one, nor take the place it would get."""
    queues: dict[str, list[Request]] = {}
    for request in requests:
        queues.setdefault(request.owner, []).append(request)
    load = running or Counter()
    lightest = sorted(queues, key=lambda owner: load[owner])  # stable: ties keep arrival order
    turns = zip_longest(*(queues[owner] for owner in lightest))
    return [request for turn in turns for request in turn if request is not None]


def set_cpu_threads(device: str, threads: int | None) -> None:
    """torch's intra-op threads for the engine thread, on a CPU only (see the module docstring)."""
    from tunery.models import pick_device

    if pick_device(device).type != "cpu":
        return
    if threads is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (available or 1) - 1)
    torch.set_num_threads(threads)


@torch.inference_mode()
def generate_alone(slot: Slot, row: Row) -> None:
    """One request on a prompt-learning model with `generate`; the answer comes as one piece."""
    request = row.request
    sampling = request.sampling
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    ids = torch.tensor([request.prompt], device=slot.device)
    greedy = sampling.temperature < 1e-5
    settings = None if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p}
    new_tokens = generate_tokens(
        slot.model, ids, torch.ones_like(ids), sampling.max_tokens, settings,
        pad_token_id=slot.tokenizer.pad_token_id,
    )  # fmt: skip
    for token in new_tokens[0].tolist():
        row.add(token)
        if row.done:
            return
    if not row.done:
        row.finish("length", row.text())
