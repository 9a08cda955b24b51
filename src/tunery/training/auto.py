"""`train.lr`, `train.epochs` and `train.batch_size: auto`: each run's own values, each with its reason.

Most users never change a hyperparameter, so the defaults decide the quality they get. Each rule is
a plain function of numbers the run already has (rows, tokens, free memory, a short learning-rate
range test) and returns a `Choice`: the value, a sentence saying why and the numbers behind it,
which `tunery train --explain`, run.json, the report and the job page show. docs/auto.md states
every rule and how to turn it off (set the key).

    choose_epochs(n_rows=320, supervised_tokens=10_712).value            # 2
    pick = pick_lr(lrs, losses, family="lora")                           # the range test's rule
    losses = range_test(model, optimizer, scheduler, step, lrs)          # state restored after

The range test is written here rather than taken from fastai or torch-lr-finder: both own the
training loop (a Learner, a DataLoader), while ours must run tunery's own step (packing, the
supervised-only loss, split passes) and leave the model, optimiser, schedule and RNG bit for bit
as it found them. The rules import no torch, so the API can estimate a job's steps with them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.config import LR_FAMILIES, TuneryConfig, lr_family
from tunery.config.registry import method_spec
from tunery.files import write_atomic

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tunery.training")
RULES_VERSION = 2  # bump when a rule changes: cached range tests stop matching

# Epochs: enough passes that a small set is seen ~TARGET_EXAMPLES times, one pass for a large one.
TARGET_EXAMPLES = 600
TARGET_SUPERVISED_TOKENS = 150_000
MAX_AUTO_EPOCHS = 10
AUTO_PATIENCE = 2  # early_stopping_patience that auto epochs switches on (evaluations without a new best)

# Batch size: ~TOKENS_PER_STEP tokens per optimiser step, but at least MIN_RUN_STEPS steps in the run.
TOKENS_PER_STEP = 2048
MIN_RUN_STEPS = 50
MAX_AUTO_BATCH = 64

# The learning-rate range test: at most TEST_SHARE of the run's examples, MIN..MAX steps.
TEST_SHARE = 0.08  # of the examples: smaller batches cost more per example; this keeps within 10% of the time
MIN_TEST_STEPS = 12
MAX_TEST_STEPS = 36
SMOOTHING = 0.8  # EMA of the loss (bias-corrected); ~5 steps of memory for a ~30-step test
DIVERGED = 4.0  # the test stops once the smoothed loss exceeds this many times its minimum
MIN_LR_FRACTION = 0.1  # the rule: a tenth of the learning rate at the smoothed loss's minimum
# No correction when the test's batch is smaller than the run's: on the demo data, tests on batches
# of 2 and of 8 examples reached their lowest loss at the same lr (4.6e-3) and diverged at the same.


@dataclass
class Choice:
    """One auto value: what the run uses, why, and the numbers the rule read."""

    key: str
    value: Any
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutoPlan:
    """The run's auto choices, the resolved `train.*` values and the range test's curve (run.json `auto`)."""

    choices: list[Choice] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)  # train.<key>: value
    curve: dict[str, Any] | None = None  # lrs, losses, smoothed (null where a step diverged)

    def add(self, choice: Choice, **resolved: Any) -> None:
        self.choices.append(choice)
        self.resolved.update(resolved or {choice.key.removeprefix("train."): choice.value})

    def apply(self, cfg: TuneryConfig) -> TuneryConfig:
        """`cfg` with every auto value replaced by the one chosen."""
        return cfg.model_copy(update={"train": cfg.train.model_copy(update=self.resolved)})

    def record(self) -> dict[str, Any]:
        return {"choices": [asdict(c) for c in self.choices], "resolved": self.resolved, "curve": self.curve}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AutoPlan:
        return cls(
            [Choice(**c) for c in record.get("choices", [])], record.get("resolved", {}), record.get("curve")
        )


def resolved(value: Any, key: str) -> Any:
    """A train value set-up has resolved; still "auto" means a caller ran before `AutoPlan.apply`."""
    if value == "auto":
        raise RuntimeError(f"{key} is still auto: set-up resolves it before training (training/auto.py)")
    return value


def batch_size_of(cfg: TuneryConfig) -> int:
    return int(resolved(cfg.train.batch_size, "train.batch_size"))


def epochs_of(cfg: TuneryConfig) -> float:
    return float(resolved(cfg.train.epochs, "train.epochs"))


# --- epochs ---------------------------------------------------------------------------------


def choose_epochs(n_rows: int, supervised_tokens: int | None) -> Choice:
    """clamp(round(min(600 / rows, 150k / supervised tokens)), 1, 10): small sets get more passes.

    Rounded to the nearest epoch (halves up), so a run sees 0.67-1.5x the target, not up to 2x."""
    by_rows = _round_half_up(TARGET_EXAMPLES / max(n_rows, 1))
    by_tokens = (  # None: not known yet (the API's estimate before the data is tokenised)
        MAX_AUTO_EPOCHS
        if supervised_tokens is None
        else _round_half_up(TARGET_SUPERVISED_TOKENS / max(supervised_tokens, 1))
    )
    epochs = min(max(min(by_rows, by_tokens), 1), MAX_AUTO_EPOCHS)
    bound = "rows" if by_rows <= by_tokens else "supervised tokens"
    reason = (
        f"{n_rows} training rows with {supervised_tokens} supervised tokens: {epochs} epoch(s) sees about "
        f"{epochs * n_rows} examples (targets {TARGET_EXAMPLES} examples or {TARGET_SUPERVISED_TOKENS} supervised "
        f"tokens, whichever comes first; here the {bound}; 1 to {MAX_AUTO_EPOCHS} epochs)"
    )
    numbers = {
        "rows": n_rows,
        "supervised_tokens": supervised_tokens,
        "by_rows": by_rows,
        "by_tokens": by_tokens,
    }
    return Choice("train.epochs", epochs, reason, numbers)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def early_stopping_choices(cfg: TuneryConfig, has_validation: bool) -> list[Choice]:
    """Auto epochs stop on validation loss and keep the best adapter, unless the user set either key."""
    if not has_validation:
        reason = (
            "early stopping needs a validation set, and this run has none: set data.validation, or "
            f"data.validation_split above 0 (now {cfg.data.validation_split:g}); every epoch runs"
        )
        return [Choice("train.early_stopping_patience", None, reason)]
    chosen = []
    given = cfg.train.model_fields_set
    if "early_stopping_patience" not in given and cfg.train.early_stopping_patience is None:
        reason = f"auto epochs stop once validation loss has not improved for {AUTO_PATIENCE} evaluations"
        chosen.append(Choice("train.early_stopping_patience", AUTO_PATIENCE, reason))
    if "load_best" not in given and not cfg.train.load_best:
        reason = "auto epochs keep the adapter of the lowest validation loss, so extra epochs cost time, not quality"
        chosen.append(Choice("train.load_best", True, reason))
    return chosen


# --- batch size -----------------------------------------------------------------------------


def choose_batch_size(
    rows: int,
    examples_seen: int | None,
    mean_tokens: float,
    longest: int,
    fit_tokens: int,
    max_batch_tokens: int | None,
    grad_accum: int = 1,
    world: int = 1,
) -> Choice:
    """~2048 tokens a step, >= 50 steps a run, no more than the rows, a power of two up to 64, never
    above what memory fits.

    `examples_seen` is None when train.max_steps fixes the run's length; `fit_tokens` is how many
    tokens one forward pass of one process may hold (training/memory.py); a pass holds at most
    train.max_batch_tokens.
    """
    by_tokens = int(TOKENS_PER_STEP // max(mean_tokens * grad_accum, 1))
    by_steps = MAX_AUTO_BATCH if examples_seen is None else examples_seen // (MIN_RUN_STEPS * grad_accum)
    passes_bounded = max_batch_tokens is not None and max_batch_tokens <= fit_tokens
    # Each of `world` processes holds batch / world examples in its own `fit_tokens`.
    memory_cap = MAX_AUTO_BATCH if passes_bounded else world * max(fit_tokens // max(longest, 1), 0)
    wanted = max(1, min(by_tokens, by_steps, rows, MAX_AUTO_BATCH, memory_cap))
    batch = 1 << (wanted.bit_length() - 1)  # down to a power of two
    batch = max(world, batch - batch % world)  # the global micro-batch splits evenly over the processes
    numbers = {
        "rows": rows, "mean_tokens": round(mean_tokens, 1), "longest": longest, "by_tokens": by_tokens,
        "by_steps": by_steps, "fit_tokens": fit_tokens, "memory_cap": memory_cap, "examples_seen": examples_seen,
    }  # fmt: skip
    steps = (
        f"{examples_seen} examples over at least {MIN_RUN_STEPS} steps allow {by_steps}; "
        if examples_seen
        else ""
    )
    memory = " (passes are split at train.max_batch_tokens)" if passes_bounded else f", {memory_cap} examples"
    reason = (
        f"~{TOKENS_PER_STEP} tokens a step at {mean_tokens:.0f} tokens an example allows {by_tokens}; {steps}"
        f"{rows} rows; memory fits ~{fit_tokens} tokens a pass{memory}"
    )
    if memory_cap < 1 or fit_tokens < longest:
        reason += f"; even one {longest}-token example may not fit: {memory_hint_short()}"
    return Choice("train.batch_size", batch, reason, numbers)


def memory_hint_short() -> str:
    return "lower data.max_length or train.max_batch_tokens, or turn on train.gradient_checkpointing"


def memory_numbers(model, dtype: torch.dtype, device: torch.device, cfg: TuneryConfig) -> tuple[int, int]:
    """(tokens one forward pass may hold, activation bytes per token) on this device for this model."""
    import torch

    from tunery.training.memory import activation_bytes_per_token, free_memory, tokens_that_fit

    dtype_bytes = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    per_token = activation_bytes_per_token(model.config, dtype_bytes, cfg.train.gradient_checkpointing)
    # Gradients and AdamW's two moments of the model's own weights; an adapter's are a rounding error.
    own = method_spec(cfg.method).own_weights
    reserved = sum(p.numel() for p in model.parameters()) * (dtype_bytes + 8) if own else 0
    return tokens_that_fit(free_memory(device), per_token, reserved), per_token


# --- the plan: epochs and batch size before the steps are counted ------------------------------


def plan_epochs_and_batch(cfg: TuneryConfig, data, model, dtype, device, world: int = 1) -> AutoPlan:
    """The auto choices that decide the run's length, made from the encoded data and the loaded model."""
    plan = AutoPlan()
    examples = data.train.examples
    lengths = [len(e.input_ids) for e in examples]
    supervised = sum(getattr(e, "n_supervised", len(e.input_ids)) for e in examples)
    train = cfg.train
    epochs = train.epochs
    if epochs == "auto":
        if train.max_steps:
            reason = f"train.max_steps={train.max_steps} sets the run's length; epochs do not count"
            plan.add(Choice("train.epochs", 1, reason), epochs=1.0)
        else:
            choice = choose_epochs(len(examples), supervised)
            plan.add(choice, epochs=float(choice.value))
            for extra in early_stopping_choices(cfg, data.validation is not None):
                if extra.value is not None:
                    plan.add(extra)
                else:
                    plan.choices.append(extra)
        epochs = plan.resolved["epochs"]
    if train.batch_size == "auto":
        fit_tokens, per_token = memory_numbers(model, dtype, device, cfg)
        from tunery.training.distributed import all_max

        fit_tokens = int(-all_max(-fit_tokens))  # the smallest device decides
        seen = None if train.max_steps else math.ceil(epochs * len(examples))
        choice = choose_batch_size(
            len(examples), seen, sum(lengths) / max(len(lengths), 1), max(lengths, default=1), fit_tokens,
            train.max_batch_tokens, train.grad_accum, world,
        )  # fmt: skip
        choice.numbers["bytes_per_token"] = per_token
        plan.add(choice)
    if train.lr == "auto":
        plan.resolved["lr"] = LR_FAMILIES[lr_family(cfg.method)][0]  # until the range test says otherwise
    return plan


# --- the learning rate: a range test and its rule -----------------------------------------------


def sweep(family: str, steps: int) -> list[float]:
    """`steps` learning rates rising geometrically from the family's lowest / 3 to its highest x 20."""
    _, low, high = LR_FAMILIES[family]
    start, end = low / 3, high * 20
    return [start * (end / start) ** (i / max(steps - 1, 1)) for i in range(steps)]


def range_test_size(run_examples: int, batch: int) -> tuple[int, int] | None:
    """(batch, steps) of a range test costing at most TEST_SHARE of the run; None when too short."""
    budget = int(TEST_SHARE * run_examples)
    if budget // batch >= MIN_TEST_STEPS:
        return batch, min(MAX_TEST_STEPS, budget // batch)
    smaller = budget // MIN_TEST_STEPS
    if smaller < 1:
        return None
    return smaller, min(MAX_TEST_STEPS, budget // smaller)


def sample_batch(lengths: list[int], batch: int) -> list[int]:
    """The range test's one batch: the `batch` examples nearest the median length (ties: the earlier row).

    Every step trains on it again, so the loss curve shows what each learning rate does, not how
    batches differ: on the demo data a 2-example batch's loss fell smoothly from 1.06 to 0.06 and
    blew up at the same lr (8.6e-3) as the noisy curve of changing batches did.
    """
    median = sorted(lengths)[len(lengths) // 2]
    return sorted(range(len(lengths)), key=lambda i: (abs(lengths[i] - median), i))[:batch]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average; a non-finite loss makes the rest infinite."""
    out, average = [], 0.0
    for i, loss in enumerate(losses, start=1):
        if not math.isfinite(loss) or not math.isfinite(average):
            average = math.inf
        else:
            average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def diverged_at(smoothed: list[float]) -> int | None:
    """The first point whose smoothed loss is non-finite or above DIVERGED x the minimum before it."""
    for i in range(1, len(smoothed)):
        if not math.isfinite(smoothed[i]) or smoothed[i] > DIVERGED * min(smoothed[:i]):
            return i
    return None


def pick_lr(lrs: list[float], losses: list[float], family: str) -> Choice:
    """The rule: a tenth of the lr where the smoothed loss is lowest before it diverges, clamped to
    the family's range; the family's lowest when the loss rises from the first step.

    The steepest descent (the other classic reading) is kept in `numbers`: over the six task runs
    of bench/quality.py it moved 5x with the data's size and was the better pick once (docs/auto.md).
    """
    _, low, high = LR_FAMILIES[family]
    smoothed = smooth(losses)
    stop = diverged_at(smoothed) or len(smoothed)
    best = min(range(stop), key=lambda i: smoothed[i])
    if best == 0:
        raw, shape = low, "the loss rose from the first step: the family's lowest lr"
    elif best == len(losses) - 1:
        raw, shape = (
            lrs[best] * MIN_LR_FRACTION,
            "the loss still fell at the sweep's end: a tenth of its last lr",
        )
    else:
        raw, shape = (
            lrs[best] * MIN_LR_FRACTION,
            f"a tenth of the lr at the smoothed loss's minimum ({lrs[best]:.3g})",
        )
    lr = min(max(raw, low), high)
    numbers = {
        "min_loss_lr": lrs[best], "min_loss": smoothed[best], "tenth_of_min_lr": lrs[best] * MIN_LR_FRACTION,
        "steepest_lr": steepest(lrs[: best + 1], smoothed[: best + 1]),
        "diverged_at_lr": lrs[stop] if stop < len(lrs) else None, "family": family, "range": [low, high],
        "steps": len(losses),
    }  # fmt: skip
    clamp = "" if lr == raw else f", clamped to the {family} range [{low:g}, {high:g}]"
    reason = f"range test over {len(losses)} steps: {shape}: {raw:.3g}{clamp}"
    return Choice("train.lr", float(f"{lr:.3g}"), reason, numbers)


def steepest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The lr where the smoothed loss falls fastest per decade (central differences); None under 3 points."""
    if len(lrs) < 3:
        return None
    slopes = {
        i: (smoothed[i + 1] - smoothed[i - 1]) / math.log10(lrs[i + 1] / lrs[i - 1])
        for i in range(1, len(lrs) - 1)
    }
    fastest = min(slopes, key=lambda i: slopes[i])
    return lrs[fastest] if slopes[fastest] < 0 else None


@dataclass
class Snapshot:
    """What a range test may change: the trainable tensors, the optimiser, the schedule, the RNGs."""

    params: list[tuple[torch.nn.Parameter, torch.Tensor]]
    optimizer: dict
    scheduler: dict | None
    rng: dict


def snapshot(model, optimizer, scheduler=None) -> Snapshot:
    """Copies of the parameters the optimiser can move (not the frozen base) and of every state."""
    import torch

    moving = {id(p): p for group in optimizer.param_groups for p in group["params"] if p.requires_grad}
    params = [(p, p.detach().clone()) for p in moving.values()]
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    sched = copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None
    return Snapshot(params, copy.deepcopy(optimizer.state_dict()), sched, rng)


def restore(snap: Snapshot, optimizer, scheduler=None) -> None:
    """Put everything `snapshot` copied back, bit for bit, and drop any gradient left."""
    import torch

    with torch.no_grad():
        for param, saved in snap.params:
            param.copy_(saved)
            param.grad = None
    optimizer.load_state_dict(snap.optimizer)
    if scheduler is not None and snap.scheduler is not None:
        scheduler.load_state_dict(snap.scheduler)
    torch.set_rng_state(snap.rng["torch"])
    random.setstate(snap.rng["python"])
    if "cuda" in snap.rng:
        torch.cuda.set_rng_state_all(snap.rng["cuda"])


def range_test(model, optimizer, scheduler, step: Callable[[int], float], lrs: list[float]) -> list[float]:
    """One optimiser step at each lr in turn (`step(i)` trains on the i-th sample batch and returns
    its loss) until the smoothed loss diverges; the model, optimiser, schedule and RNGs are restored.

    Parameter groups keep their ratios to the largest group's lr (progressive's per-layer decay).
    """
    saved = snapshot(model, optimizer, scheduler)
    # The schedule's peak (initial_lr), not the current lr: warm-up starts at 0.
    peaks = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    ratios = [peak / (max(peaks) or 1.0) for peak in peaks]
    losses: list[float] = []
    try:
        for i, lr in enumerate(lrs):
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            losses.append(step(i))
            if diverged_at(smooth(losses)) is not None:
                break
    finally:
        restore(saved, optimizer, scheduler)
    return losses


# --- the cache --------------------------------------------------------------------------------


def cache_key(cfg: TuneryConfig, model_path: str, sources: dict, batch: int) -> str:
    """sha256 of what the range test's answer depends on: data, model, method, rank, batch, length."""
    hashes = {role: source.get("content_hash") for role, source in sorted(sources.items())}
    parts = [
        RULES_VERSION, hashes, cfg.data.validation_split, cfg.data.max_length, cfg.data.train_on, cfg.task,
        cfg.model.name, str(model_path), cfg.method, cfg.lora.r, batch, cfg.train.grad_accum,
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cache_dir() -> Path:
    """Beside the tokenisation cache: $TUNERY_HOME/lr_range."""
    from tunery.models import tunery_home

    return tunery_home() / "lr_range"


def read_cached(key: str) -> dict | None:
    try:
        return json.loads((cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_cached(key: str, entry: dict) -> None:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{key}.json", json.dumps(entry))


def _finite(values: list[float]) -> list[float | None]:
    """JSON has no infinity: a diverged step's loss is stored as null."""
    return [value if math.isfinite(value) else None for value in values]


def skipped_lr(cfg: TuneryConfig, why: str) -> Choice:
    """The family default, when no range test runs (a short run, several processes)."""
    family = lr_family(cfg.method)
    default, low, high = LR_FAMILIES[family]
    reason = f"{why}: the {family} family's default"
    return Choice("train.lr", default, reason, {"family": family, "range": [low, high]})


def choose_lr(
    cfg: TuneryConfig, key: str, run_examples: int, single_process: bool,
    run_test: Callable[[int, list[float]], list[float]],
) -> tuple[Choice, dict[str, Any] | None]:  # fmt: skip
    """train.lr: auto for this run: cached, tested, or the family default; returns (choice, curve).

    `run_test(batch, lrs)` runs the range test on sample batches of `batch` examples and returns the
    losses; `key` is `cache_key(...)` for the run's batch size.
    """
    cached = read_cached(key)
    if cached is not None:
        choice = Choice(**cached["choice"])
        choice.reason += " (cached from an earlier run on the same data, model and settings)"
        return choice, cached.get("curve")
    if not single_process:
        return skipped_lr(
            cfg, "the range test runs on a single process only (run once on one to cache it)"
        ), None
    batch = batch_size_of(cfg)
    size = range_test_size(run_examples, batch)
    if size is None:
        needed = math.ceil(MIN_TEST_STEPS / TEST_SHARE)
        why = f"the run sees {run_examples} examples, too few for a range test within {TEST_SHARE:.0%} (needs {needed})"
        return skipped_lr(cfg, why), None
    test_batch, steps = size
    family = lr_family(cfg.method)
    lrs = sweep(family, steps)
    started = time.perf_counter()
    losses = run_test(test_batch, lrs)
    choice = pick_lr(lrs[: len(losses)], losses, family)
    choice.numbers |= {
        "test_batch": test_batch, "run_batch": batch, "test_examples": test_batch * len(losses),
        "run_examples": run_examples, "test_seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    curve = {"lrs": lrs[: len(losses)], "losses": _finite(losses), "smoothed": _finite(smooth(losses))}
    write_cached(key, {"choice": asdict(choice), "curve": curve})
    return choice, curve


__all__ = [
    "AutoPlan", "Choice", "choose_batch_size", "choose_epochs", "choose_lr", "pick_lr", "plan_epochs_and_batch",
    "range_test", "range_test_size", "restore", "sample_batch", "smooth", "snapshot", "sweep",
]  # fmt: skip
