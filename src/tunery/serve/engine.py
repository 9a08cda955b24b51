"""One copy of each base model in memory, many adapters on it, concurrent requests batched together.

    engine = Engine(max_adapters=8).start()
    target = Target.for_run("runs/a")                       # or Target.for_base("smollm2-135m-instruct")
    prompt = engine.encode_chat(target, [{"role": "user", "content": "Hi"}])
    for event in engine.submit(target, prompt, Sampling(max_tokens=32, temperature=0)).events():
        print(event)                                          # Token(text=...) ... Finish(...)
    engine.stop()

Why our own decode loop rather than `model.generate`: the rows of one batch each have their own
adapter (PEFT's mixed-adapter batches, `adapter_names=[...]` with "__base__" for the bare model),
their own sampling settings, seed, stop strings and length, and they stream tokens as they come.
Batching: a background thread waits for a request, gathers what else arrives within `window_s`
(dynamic batching), and runs the requests that share one base model as one batch, left padded
with an attention mask and explicit positions so a row gives the same greedy tokens batched as alone.

Adapters that cannot join mixed batches (DoRA, IA3, prefix/prompt tuning, full or partial
fine-tunes) get a model of their own, loaded with `tunery.inference.load_run_model` and served
one request at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 16
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """What a model name serves: a base model, optionally with a run's adapter on it."""

    base: str  # what `resolve_model` loads: a directory, alias or hub id
    run_dir: Path | None = None
    shared: bool = True  # runs on the shared base (LoRA without DoRA) rather than on a model of its own

    @classmethod
    def for_base(cls, name: str) -> Target:
        from tunery.models import resolve_model

        return cls(base=resolve_model(name))

    @classmethod
    def for_run(cls, run_dir: str | Path) -> Target:
        from tunery.models import resolve_model
        from tunery.run import Run

        run = Run.open(run_dir)
        if run.config.task == "classification":
            raise ValueError(f"{run.path} is a classification run; it has no text to generate")
        return cls(base=resolve_model(run.config.model.name), run_dir=run.path, shared=mixes(run.adapter_dir))

    @property
    def adapter(self) -> str:
        """The adapter's name inside the PEFT model (module names allow no dots)."""
        if self.run_dir is None:
            return BASE
        return "a" + hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:12]

    @property
    def slot(self) -> str:
        """Requests with the same slot share one model and so one batch."""
        return self.base if self.shared else f"{self.base}+{self.run_dir}"


def mixes(adapter_dir: Path) -> bool:
    """Whether PEFT can run this adapter in a mixed-adapter batch: plain LoRA (also rsLoRA, PiSSA...)."""
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.exists():
        return False  # full / freeze fine-tunes store trained tensors, no PEFT adapter
    config = json.loads(config_file.read_text())
    return config.get("peft_type") == "LORA" and not config.get("use_dora")


@dataclass
class Token:
    text: str


@dataclass
class Finish:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failure:
    message: str


class Stream:
    """The events of one request, handed from the engine thread to a thread or an asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self._loop = loop
        self._async: asyncio.Queue | None = asyncio.Queue() if loop else None
        self._sync: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, event) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._async.put_nowait, event)
        else:
            self._sync.put(event)

    def events(self):
        while True:
            event = self._sync.get()
            yield event
            if not isinstance(event, Token):
                return

    async def aevents(self):
        while True:
            event = await self._async.get()
            yield event
            if not isinstance(event, Token):
                return


@dataclass
class Request:
    target: Target
    prompt: list[int]
    sampling: Sampling
    stream: Stream
    arrived: float = field(default_factory=time.monotonic)


class Slot:
    """A model in memory and its tokenizer; a shared slot keeps up to `max_adapters` adapters, LRU."""

    def __init__(self, model, tokenizer, max_adapters: int):
        self.model, self.tokenizer, self.max_adapters = model, tokenizer, max_adapters
        self.adapters: OrderedDict[str, Path] = OrderedDict()
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos.add(tokenizer.eos_token_id)

    def ensure_adapters(self, targets: list[Target]) -> None:
        """Load the batch's adapters (the least recently used others give way)."""
        from peft import PeftModel

        needed = {t.adapter: t.run_dir / "adapter" for t in targets if t.run_dir is not None}
        for name, folder in needed.items():
            if name in self.adapters:
                self.adapters.move_to_end(name)
                continue
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(folder, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name)
            self.model.eval()
            self.adapters[name] = folder
        while len(self.adapters) > self.max_adapters:
            oldest = next(iter(self.adapters))
            if oldest in needed:
                break
            self.model.delete_adapter(oldest)
            del self.adapters[oldest]


class Engine:
    def __init__(
        self, max_adapters: int = 8, max_batch: int = 32, window_s: float = 0.01, device: str = "auto"
    ):
        self.max_adapters, self.max_batch, self.window_s, self.device = (
            max_adapters,
            max_batch,
            window_s,
            device,
        )
        self.slots: dict[str, Slot] = {}
        self._load_lock = threading.Lock()
        self._pending: list[Request] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batch_sizes: list[int] = []  # of recent batches, for tests and the benchmark

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

    def encode_text(self, target: Target, text: str) -> list[int]:
        return self.slot(target).tokenizer(text)["input_ids"]

    def submit(
        self,
        target: Target,
        prompt: list[int],
        sampling: Sampling,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Stream:
        request = Request(target, prompt, sampling, Stream(loop))
        with self._wake:
            self._pending.append(request)
            self._wake.notify()
        return request.stream

    # -- the batching loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self.batch_sizes = [*self.batch_sizes[-99:], len(batch)]
            try:
                self._run(batch)
            except Exception as err:  # a broken batch fails its requests, not the server
                for request in batch:
                    request.stream.put(Failure(f"{type(err).__name__}: {err}"))

    def _next_batch(self) -> list[Request] | None:
        with self._wake:
            while not self._pending and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
        time.sleep(self.window_s)  # let concurrent requests arrive and join
        with self._wake:
            batch = take_batch(self._pending, self.max_batch, self.max_adapters)
            self._pending = [r for r in self._pending if all(r is not b for b in batch)]
        return batch

    def _run(self, batch: list[Request]) -> None:
        slot = self.slots[batch[0].target.slot]
        if batch[0].target.shared:
            slot.ensure_adapters([r.target for r in batch])
        if (
            getattr(slot.model, "active_peft_config", None)
            and slot.model.active_peft_config.is_prompt_learning
        ):
            for request in batch:  # prefix / prompt tuning change the cache; let generate() handle it
                generate_alone(slot, request)
            return
        decode(slot, batch, mixed=batch[0].target.shared)

    def _load(self, target: Target) -> Slot:
        from tunery.data.tokenize import ensure_chat_template
        from tunery.models import load_causal_lm, pick_device, pick_dtype

        if not target.shared:
            from tunery.inference import load_run_model

            model, tokenizer = load_run_model(target.run_dir, device=self.device)
            return Slot(model.eval(), tokenizer, self.max_adapters)
        device = pick_device(self.device)
        model, tokenizer = load_causal_lm(target.base, device, pick_dtype("auto", device))
        ensure_chat_template(tokenizer)
        return Slot(model.eval(), tokenizer, self.max_adapters)


def take_batch(pending: list[Request], max_batch: int, max_adapters: int) -> list[Request]:
    """The oldest request and those after it that share its model, within the batch and adapter limits."""
    first = pending[0]
    batch, adapters = [], set()
    for request in pending:
        if request.target.slot != first.target.slot or len(batch) == max_batch:
            continue
        if not first.target.shared and batch:
            break  # a model of its own serves one request at a time
        name = request.target.adapter
        if name != BASE and name not in adapters and len(adapters) == max_adapters:
            continue
        if name != BASE:
            adapters.add(name)
        batch.append(request)
    return batch


class Row:
    """One request's answer as it grows: stop strings, EOS, length, and the text not yet streamed."""

    def __init__(self, request: Request, slot: Slot):
        self.request, self.slot, self.tokens, self.sent, self.done = request, slot, [], 0, False
        seed = request.sampling.seed
        self.generator = torch.Generator(device=slot.device)
        self.generator.manual_seed(seed if seed is not None else torch.seed())

    def choose(self, logits: torch.Tensor) -> int:
        """Next token from one row's last logits (vocab,)."""
        sampling = self.request.sampling
        if sampling.temperature < 1e-5:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p  # always keeps the top token
            probs = probs.scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def add(self, token: int) -> None:
        sampling = self.request.sampling
        self.tokens.append(token)
        if token in self.slot.eos:
            return self.finish("stop", self.text(exclude_last=True))
        text = self.text()
        for stop in sampling.stop:
            if (at := text.find(stop, max(0, self.sent - len(stop)))) >= 0:
                return self.finish("stop", text[:at])
        if len(self.tokens) >= sampling.max_tokens:
            return self.finish("length", text)
        # hold back what could be the start of a stop string, and half a multi-byte character
        hold = max((len(s) - 1 for s in sampling.stop), default=0)
        safe = len(text) - hold if not text.endswith("\ufffd") else len(text.rstrip("\ufffd")) - hold
        if safe > self.sent:
            self.request.stream.put(Token(text[self.sent : safe]))
            self.sent = safe

    def text(self, exclude_last: bool = False) -> str:
        tokens = self.tokens[:-1] if exclude_last else self.tokens
        return self.slot.tokenizer.decode(tokens, skip_special_tokens=True)

    def finish(self, reason: str, text: str) -> None:
        if len(text) > self.sent:
            self.request.stream.put(Token(text[self.sent :]))
        self.request.stream.put(Finish(reason, len(self.request.prompt), len(self.tokens)))
        self.done = True


@torch.inference_mode()
def decode(slot: Slot, batch: list[Request], mixed: bool) -> None:
    """Prefill the left-padded prompts, then one token per row per step until every row is done."""
    rows = [Row(request, slot) for request in batch]
    width = max(len(r.prompt) for r in batch)
    pad = slot.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r.prompt)) + r.prompt for r in batch], device=slot.device)
    mask = torch.tensor(
        [[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in batch], device=slot.device
    )
    extra = {"adapter_names": [r.target.adapter for r in batch]} if mixed and slot.adapters else {}
    cache, step_ids = None, ids
    while True:
        # positions count real tokens only, so a padded row sees the positions it would see alone
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
        out = slot.model(
            input_ids=step_ids, attention_mask=mask, position_ids=positions,
            past_key_values=cache, use_cache=True, **extra,
        )  # fmt: skip
        cache, logits = out.past_key_values, out.logits[:, -1, :]  # (batch, vocab)
        chosen = []
        for i, row in enumerate(rows):
            token = row.choose(logits[i]) if not row.done else pad
            if not row.done:
                row.add(token)
            chosen.append(token)
        if all(row.done for row in rows):
            return
        step_ids = torch.tensor(chosen, device=slot.device).unsqueeze(-1)
        mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)


@torch.inference_mode()
def generate_alone(slot: Slot, request: Request) -> None:
    """One request on a prompt-learning model with `generate`; the answer comes as one piece."""
    sampling, row = request.sampling, Row(request, slot)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    ids = torch.tensor([request.prompt], device=slot.device)
    greedy = sampling.temperature < 1e-5
    output = slot.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=sampling.max_tokens,
        do_sample=not greedy, **({} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p}),
        pad_token_id=slot.tokenizer.pad_token_id,
    )  # fmt: skip
    for token in output[0, ids.shape[1] :].tolist():
        row.add(token)
        if row.done:
            return
    if not row.done:
        row.finish("length", row.text())
