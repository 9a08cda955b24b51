"""The fine-tuning recipe: set up, loop, save. Read it top to bottom.

    tunery train examples/demo.yaml --set lora.r=16 --set train.epochs=2
    tunery train --resume runs/<run>

The loop is written out rather than handed to a trainer class: the batch plan
(data/batching.py), the loss on supervised tokens only (nn/loss.py) and the
checkpoint format (training/checkpoint.py) are where speed and trust come from, and
here they are in plain sight.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from tunery.config import TuneryConfig, load_config
from tunery.data.batching import collate, plan_batches, split_by_tokens, supervised_tokens
from tunery.data.prepare import PreparedData
from tunery.data.template_check import describe_issues
from tunery.data.tokenize import EncodedData, ensure_chat_template
from tunery.errors import TuneryError
from tunery.inference import starting_model
from tunery.methods import Method, apply_method, count_parameters, get_method
from tunery.methods.weights import save_weights
from tunery.models import load_tokenizer, pick_device, pick_dtype, set_threads
from tunery.nn.fused_lora import use_fused_lora
from tunery.nn.loss import mean_loss, summed_loss
from tunery.run import Run
from tunery.tasks import LabelledTask, Task, get_task
from tunery.tasks.classification import save_labels
from tunery.training import distributed
from tunery.training.auto import (
    AutoPlan,
    batch_size_of,
    cache_key,
    choose_lr,
    epochs_of,
    plan_epochs_and_batch,
    range_test,
    sample_batch,
)
from tunery.training.checkpoint import (
    checkpoint_name,
    latest_checkpoint,
    verify_checkpoint,
)
from tunery.training.memory import explains_out_of_memory
from tunery.training.overfitting import overfitting_warning
from tunery.training.progress import Progress
from tunery.training.tracking import Trackers, open_trackers

log = logging.getLogger("tunery.training")


class TrainingDiverged(TuneryError, RuntimeError):
    """The loss became NaN or infinite; training stops at once instead of training on garbage."""

    code = "training_diverged"


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint so resume continues at the same batch."""

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    tokens_seen: int = 0
    overfitting_step: int | None = None  # first evaluation that warned of overfitting


def train(
    config, overrides: list[str] | None = None, resume: str | Path | None = None, quiet: bool = False,
    on_ready: Callable[[Run], None] | None = None, dry_run: bool = False,
) -> Run:  # fmt: skip
    """Set up, loop, finish. `on_ready(run)` is called once set-up has made its choices (run.json `auto`);
    `dry_run` stops there: the run is left with status `planned` and no adapter."""
    if resume is not None:
        run = Run.open(resume)
        cfg = load_config(run.path / "config.yaml", overrides)
    else:
        cfg = load_config(config, overrides)
        run = Run.create(cfg)
    run = distributed.for_this_rank(run)
    handler = _log_to(run)
    t = None
    try:
        t = set_up(run, cfg, resuming=resume is not None)
        if on_ready is not None:
            on_ready(run)
        if dry_run:
            run.update_record(status="planned")
            t.trackers.finish(completed=False)
            return run
        run_loop(t, quiet)
        return finish(t)
    except BaseException as err:
        run.update_record(status="failed", error=f"{type(err).__name__}: {err}")
        if t is not None:
            t.trackers.finish(completed=False)
        log.error("run failed: %s", err)
        raise
    finally:
        logging.getLogger("tunery").removeHandler(handler)
        handler.close()
        distributed.teardown(t.ranks if t is not None else None)


@dataclass
class Clock:
    """When set-up and the loop began, for the speed figures of the final metrics."""

    setup_started: float
    loop_started: float = 0.0
    first_step_seconds: float | None = None  # set-up plus the first optimiser step: the wait before progress
    tokens_at_start: int = 0  # supervised tokens already seen by a resumed run

    def tokens_per_s(self, tokens_seen: int) -> float:
        return (tokens_seen - self.tokens_at_start) / max(time.perf_counter() - self.loop_started, 1e-9)


@dataclass
class Training:
    """What set-up builds for the loop and the finish: one run's model, data, optimiser and position."""

    run: Run
    cfg: TuneryConfig
    method: Method
    options: Any  # the method's own section(s), from `method.options(cfg)`
    task: Task
    ranks: distributed.Ranks
    device: torch.device
    tokenizer: Any
    data: PreparedData
    model: Any
    optimizer: Any
    scheduler: Any
    total_steps: int
    clock: Clock
    state: LoopState = field(default_factory=LoopState)
    parts: Any = None  # the task's loss parts, set when the loop starts
    trackers: Trackers = field(default_factory=Trackers)  # train.report_to; empty on ranks other than 0

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


# --- set-up ---------------------------------------------------------------------------------


def set_up(run: Run, cfg: TuneryConfig, resuming: bool) -> Training:
    """Seed, devices, tokenizer, data, model with the method applied, optimiser; resume if asked."""
    clock = Clock(setup_started=time.perf_counter())
    torch.manual_seed(cfg.train.seed)
    threads = set_threads(cfg.train.threads)
    ranks, device = distributed.setup(cfg.distributed, cfg.train.threads, pick_device(cfg.model.device))
    dtype = pick_dtype(cfg.model.dtype, device)
    model_path, parent = starting_model(cfg)  # a run folder (init_from) is merged into a model folder once
    method, task = get_method(cfg.method), get_task(cfg.task)
    options = method.options(cfg)
    method.check(options, device)  # before any weight loads: a refusal costs nothing
    trackers = open_trackers(cfg, ranks.main)  # an unreachable tracker fails here too
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    if task.SPEC.chat_template and ensure_chat_template(tokenizer):
        log.info("the model has no chat template; using ChatML")
    data = task.prepare(cfg, tokenizer)  # sft: the template round-trip check too (strict: stops here)
    warn_of_template_issues(run, data)
    run.pin_datasets(data.sources)
    labels = getattr(data, "labels", None)
    model = task.load_model(model_path, device, dtype, cfg, labels, **method.load_kwargs(options, device))
    plan = plan_auto(run, cfg, data, model, dtype, device, ranks, resuming)  # train.*: auto (auto.py)
    lr_to_test = cfg.train.lr == "auto" and "lr" not in {c.key.removeprefix("train.") for c in plan.choices}
    cfg = plan.apply(cfg)
    options = method.options(cfg)
    total_steps = count_steps(cfg, len(data.train.examples))
    model = prepare_model(model, cfg, total_steps)
    if hasattr(task, "before_training"):  # preference: reference log-probs from the starting weights
        task.before_training(model, data, cfg, f"{model_path}|{dtype}")
    trainable, total = count_parameters(model)
    model = distributed.wrap(model, ranks, cfg.distributed)
    optimizer, scheduler = build_optimizer(model, method, options, cfg, total_steps)
    t = Training(
        run, cfg, method, options, task, ranks, device, tokenizer, data, model, optimizer, scheduler,
        total_steps, clock,
    )  # fmt: skip
    if lr_to_test:
        tune_lr(t, plan, model_path)  # the range test; rebuilds the optimiser at the chosen lr
    cfg, optimizer, scheduler = t.cfg, t.optimizer, t.scheduler
    ranks.start_engine(model, optimizer, scheduler, cfg.distributed, cfg.train.max_grad_norm)  # deepspeed
    t.trackers = trackers
    if resuming:
        resume_from_checkpoint(t)
    run.update_record(
        status="running",
        config=cfg.model_dump(),
        model_path=model_path,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        threads=threads,
        parameters={"trainable": trainable, "total": total, "percent": round(100 * trainable / total, 4)},
        data=data.summary(),
        versions=package_versions(),
        total_steps=total_steps,
        auto=plan.record(),
        **({"parent": parent} if parent else {}),
    )
    trackers.start(run, cfg, data.sources)
    log.info(
        "training %s with %s: %d of %d parameters trainable (%.2f%%), %d steps, %s %s, %d threads",
        cfg.model.name, cfg.method, trainable, total, 100 * trainable / total, total_steps, device, dtype, threads,
    )  # fmt: skip
    return t


def plan_auto(run: Run, cfg: TuneryConfig, data, model, dtype, device, ranks, resuming: bool) -> AutoPlan:
    """The train.*: auto values (training/auto.py): those recorded in run.json on resume, else chosen now."""
    recorded = run.record.get("auto")
    plan = AutoPlan.from_record(recorded) if resuming and recorded else None
    plan = plan or plan_epochs_and_batch(cfg, data, model, dtype, device, ranks.world)
    for choice in plan.choices:
        log.info("auto %s = %s: %s", choice.key, choice.value, choice.reason)
    return plan


def tune_lr(t: Training, plan: AutoPlan, model_path) -> None:
    """train.lr: auto: the range test (or its cached answer, or the family default), then the optimiser
    and schedule are built again at the chosen peak lr."""
    train = t.cfg.train
    run_examples = t.total_steps * batch_size_of(t.cfg) * train.grad_accum
    key = cache_key(t.cfg, str(model_path), t.data.sources, batch_size_of(t.cfg))
    single = t.ranks.world == 1 and t.ranks.strategy == "single"
    choice, curve = choose_lr(t.cfg, key, run_examples, single, lambda b, lrs: lr_range_losses(t, b, lrs))
    log.info("auto %s = %s: %s", choice.key, choice.value, choice.reason)
    plan.add(choice)
    plan.curve = curve
    t.cfg = plan.apply(t.cfg)
    t.options = t.method.options(t.cfg)
    t.optimizer, t.scheduler = build_optimizer(t.model, t.method, t.options, t.cfg, t.total_steps)


def lr_range_losses(t: Training, batch: int, lrs: list[float]) -> list[float]:
    """The range test's losses: one optimiser step per lr, each on the same sample batch (auto.sample_batch)."""
    examples = t.data.train.examples
    group = [examples[i] for i in sample_batch([len(e.input_ids) for e in examples], batch)]
    parts = t.ranks.loss_parts(t.task.loss_for(t.model, t.data, t.cfg))  # its own: task metrics stay apart

    def step(i: int) -> float:
        t.model.train()
        try:
            loss, _ = train_step(t.model, parts, [group], t.cfg, t.device, t.pad_id, i)
        except TrainingDiverged:
            loss = math.inf
        else:
            if t.cfg.train.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.train.max_grad_norm)
            t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        return loss

    started = time.perf_counter()
    losses = range_test(t.model, t.optimizer, t.scheduler, step, lrs)
    seconds = time.perf_counter() - started
    log.info("lr range test: %d steps of %d examples in %.1f s", len(losses), batch, seconds)
    return losses


def count_steps(cfg: TuneryConfig, n_examples: int) -> int:
    """Optimiser steps of the whole run: train.max_steps, else the epochs' worth of batches."""
    steps_per_epoch = math.ceil(math.ceil(n_examples / batch_size_of(cfg)) / cfg.train.grad_accum)
    return cfg.train.max_steps or math.ceil(epochs_of(cfg) * steps_per_epoch)


def prepare_model(model, cfg: TuneryConfig, total_steps: int):
    """The loaded model with the method applied, fused LoRA and gradient checkpointing as configured."""
    model = apply_method(cfg.method, model, cfg, total_steps)
    if cfg.train.fused_lora and (fused := use_fused_lora(model)):
        log.info("fused LoRA forward/backward on %d layers", fused)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def resume_from_checkpoint(t: Training) -> None:
    """Continue from the newest checkpoint that verifies; none: start at step 0."""
    checkpoint = latest_checkpoint(t.run.checkpoints_dir)
    if checkpoint is None:
        return
    t.state = LoopState(**t.ranks.load_checkpoint(checkpoint, t.model, t.optimizer, t.scheduler))
    log.info("resumed from %s at step %d", checkpoint.name, t.state.global_step)
    t.method.at_position(t.model, t.options, t.state.global_step, t.state.epoch)


# --- loop -----------------------------------------------------------------------------------


def run_loop(t: Training, quiet: bool) -> None:
    """Epochs of optimiser steps until total_steps or an early stop; each step: step, log, evaluate, save."""
    t.clock.loop_started = time.perf_counter()
    t.clock.tokens_at_start = t.state.tokens_seen
    t.parts = t.ranks.loss_parts(t.task.loss_for(t.model, t.data, t.cfg))
    state = t.state
    with Progress(t.total_steps, start=state.global_step, enabled=not quiet and t.ranks.main) as progress:
        while state.global_step < t.total_steps and not state.stopped_early:
            steps = optimizer_steps(t.data.train, t.cfg, state.epoch)
            for micro_batches in steps[state.step_in_epoch :]:
                loss = optimizer_step(t, micro_batches, len(steps))
                log_step(t, progress, loss)
                epoch_ends = state.step_in_epoch == len(steps)
                last = state.global_step >= t.total_steps
                if _due(t.cfg.train.eval_every, state.global_step, epoch_ends or last):
                    evaluate_during_training(t)
                checkpoint_if_due(t, epoch_ends, last)
                if last or state.stopped_early:
                    break
            else:
                state.epoch += 1
                state.step_in_epoch = 0


def optimizer_step(t: Training, micro_batches: list[list[int]], steps_in_epoch: int) -> float:
    """Forward, backward and one optimiser step over `micro_batches`; returns the mean token loss."""
    state = t.state
    t.model.train()
    groups = t.ranks.shard([[t.data.train.examples[i] for i in batch] for batch in micro_batches])
    model = t.ranks.forward_model(t.model)
    loss, n_tokens = train_step(
        model, t.parts, groups, t.cfg, t.device, t.pad_id, state.global_step, t.ranks,
        spare=[t.data.train.examples[micro_batches[0][0]]],
    )  # fmt: skip
    loss = t.ranks.sync(t.model, loss)
    if t.ranks.engine is not None:
        t.ranks.engine.step()  # DeepSpeed clips, steps the optimiser and the schedule, zeroes gradients
    else:
        if t.cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.train.max_grad_norm)
        t.optimizer.step()
        t.scheduler.step()
    next_epoch = state.epoch + (state.step_in_epoch + 1 == steps_in_epoch)
    # Before zero_grad: AdaLoRA reads this step's gradients.
    t.method.on_step(t.model, t.options, state.global_step + 1, next_epoch)
    t.optimizer.zero_grad(set_to_none=True)
    state.global_step += 1
    state.step_in_epoch += 1
    state.tokens_seen += n_tokens
    return loss


def log_step(t: Training, progress: Progress, loss: float) -> None:
    """The progress bar every step; metrics.jsonl every train.log_every steps."""
    state, clock = t.state, t.clock
    if clock.first_step_seconds is None:
        clock.first_step_seconds = round(time.perf_counter() - clock.setup_started, 3)
    tokens_per_s = clock.tokens_per_s(state.tokens_seen)
    progress.update(state.global_step, loss=loss, tokens_per_s=tokens_per_s)
    task_metrics = take_task_metrics(t.parts)  # every step, so each logged row covers its own step
    if state.global_step % t.cfg.train.log_every == 0:
        row = dict(
            step=state.global_step, epoch=state.epoch, loss=round(loss, 6), lr=t.scheduler.get_last_lr()[0],
            tokens_per_s=round(tokens_per_s, 2), supervised_tokens=state.tokens_seen, **task_metrics,
        )  # fmt: skip
        t.run.log_metrics(**row)
        t.trackers.log(state.global_step, row)


def take_task_metrics(parts, prefix: str = "") -> dict:
    """A task loss's own metrics since the last call (preference: reward accuracy, margin, log-probs)."""
    take = getattr(parts, "take_metrics", None)
    return {f"{prefix}{name}": value for name, value in take().items()} if take else {}


def checkpoint_if_due(t: Training, epoch_ends: bool, last: bool) -> None:
    """Save on train.save_every (else each epoch end), at the end, at an early stop and at a new best."""
    state, train = t.state, t.cfg.train
    new_best = train.load_best and state.best_step == state.global_step
    if _due(train.save_every, state.global_step, epoch_ends or last) or state.stopped_early or new_best:
        t.ranks.save_checkpoint(
            t.run.checkpoints_dir, state.global_step, t.model, t.optimizer, t.scheduler,
            asdict(state) | _next_position(state, epoch_ends), keep=train.keep_checkpoints,
        )  # fmt: skip


# --- finish ---------------------------------------------------------------------------------


def finish(t: Training) -> Run:
    """The adapter (the best one with train.load_best), the final metrics, a classifier's scores."""
    elapsed = time.perf_counter() - t.clock.loop_started
    state, run = t.state, t.run
    adapter_step = (
        restore_best(run, state, t.ranks, t.model, t.optimizer, t.scheduler)
        if t.cfg.train.load_best
        else state.global_step
    )
    t.ranks.on_main(save_outputs, run, t.model, t.tokenizer, t.cfg.method, getattr(t.data, "labels", None))
    metrics = final_metrics(t, run.history(), elapsed, adapter_step)
    run.update_record(status="completed", metrics=metrics, error=None)
    log.info("done: %s", metrics)
    if t.task.SPEC.labelled:
        scores = cast(LabelledTask, t.task).scores(t.model, t.data, t.pad_id, batch_size_of(t.cfg))
        run.update_record(metrics=run.metrics | scores)
        log.info("validation: %s", scores)
    finish_tracking(t.trackers, run)
    return run


def finish_tracking(trackers: Trackers, run: Run) -> None:
    """The final metrics (prefixed final/), the adapter and run.json as artifacts, then close."""
    trackers.log(run.metrics.get("steps") or 0, {f"final/{k}": v for k, v in run.metrics.items()})
    trackers.artifact(run.adapter_dir, "model")
    trackers.artifact(run.path / "run.json", "report")
    trackers.finish(completed=True)


def final_metrics(t: Training, history: list[dict], elapsed: float, adapter_step: int) -> dict:
    state, clock = t.state, t.clock
    train_losses = [row["loss"] for row in history if "loss" in row]
    return {
        "train_loss": train_losses[-1] if train_losses else None,
        "val_loss": _last_val_loss(history),
        "best_val_loss": state.best_val_loss,
        "best_step": state.best_step,
        "steps": state.global_step,
        "stopped_early": state.stopped_early,
        "overfitting_step": state.overfitting_step,
        "adapter_step": adapter_step,  # the step whose weights are in adapter/
        "train_seconds": round(elapsed, 2),
        "setup_seconds": round(clock.loop_started - clock.setup_started, 3),  # imports aside
        "first_step_seconds": clock.first_step_seconds,
        "tokens_per_s": round((state.tokens_seen - clock.tokens_at_start) / max(elapsed, 1e-9), 2),
    }


def save_outputs(run: Run, model, tokenizer, method: str, labels: list[str] | None) -> None:
    """adapter/: the trained weights, the labels of a classifier, the tokenizer."""
    save_weights(model, run.adapter_dir, method)
    if labels is not None:
        save_labels(run.adapter_dir, labels)
    tokenizer.save_pretrained(run.adapter_dir)


def build_optimizer(model, method: Method, options: Any, cfg: TuneryConfig, total_steps: int):
    """The method's optimiser (AdamW unless it says otherwise) over its parameter groups, and the LR schedule."""
    from transformers import get_scheduler

    params = method.param_groups(model, options)
    optimizer_class = method.optimizer_class(options)
    optimizer = optimizer_class(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    name = {"constant": "constant_with_warmup"}.get(cfg.train.scheduler, cfg.train.scheduler)
    scheduler = get_scheduler(
        name,
        optimizer,
        num_warmup_steps=round(cfg.train.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


def optimizer_steps(train: EncodedData, cfg: TuneryConfig, epoch: int) -> list[list[list[int]]]:
    """The epoch's batches, grouped into optimiser steps of `grad_accum` micro-batches."""
    lengths = [len(e.input_ids) for e in train.examples]
    batches = plan_batches(
        lengths, batch_size_of(cfg), cfg.train.seed, epoch, group_by_length=cfg.batching == "grouped"
    )
    accum = cfg.train.grad_accum
    return [batches[i : i + accum] for i in range(0, len(batches), accum)]


def train_step(
    model, parts, groups, cfg, device, pad_id: int, step: int, ranks=None, spare=None
) -> tuple[float, int]:
    """Forward and backward over one optimiser step's micro-batches; returns (mean token loss, supervised tokens).

    Each micro-batch runs in passes of at most train.max_batch_tokens tokens. Under DeepSpeed a rank
    with fewer passes than the busiest adds zero-weighted passes over `spare` (a list of examples).
    """
    ranks = ranks or distributed.Ranks()
    own_loss = hasattr(parts, "summed_loss")  # classification/seq2seq: the task collates and counts
    count = parts.count if own_loss else supervised_tokens
    with explains_out_of_memory(step, cfg.train, cfg.data.max_length):
        n_tokens = max(1, distributed.all_sum(sum(count(group) for group in groups)))  # of all ranks
        passes = [[group] if own_loss else split_by_tokens(group, cfg.train.max_batch_tokens, cfg.batching)
                  for group in groups]  # fmt: skip
        padding = ranks.padding_passes(sum(len(pieces) for pieces in passes))  # before any backward
        total = 0.0
        for group, pieces in zip(groups, passes, strict=True):
            for piece in pieces:
                total += _forward_backward(model, parts, piece, cfg, device, pad_id, n_tokens, ranks)
            if not math.isfinite(total):
                lines = sorted(example.line for example in group)
                raise TrainingDiverged(
                    f"loss became {total} at step {step + 1} (batch of data lines {lines[:8]}); "
                    f"lower train.lr (now {cfg.train.lr}) or check those rows"
                )
        for _ in range(padding):
            _forward_backward(model, parts, spare, cfg, device, pad_id, None, ranks)
    return total / n_tokens, n_tokens


def _forward_backward(model, parts, piece, cfg, device, pad_id: int, n_tokens: int | None, ranks) -> float:
    """One pass: its summed loss over all ranks' tokens, backpropagated; n_tokens None: weighted 0."""
    own_loss = hasattr(parts, "summed_loss")
    batch = parts.collate(piece, pad_id) if own_loss else collate(piece, cfg.batching, pad_id)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    loss_sum, _ = summed_loss(model, batch, parts)
    ranks.backward(loss_sum * 0.0 if n_tokens is None else loss_sum / n_tokens)
    return loss_sum.item()


def evaluate_during_training(t: Training) -> None:
    """Validation loss now; tracks the best, warns of overfitting, stops early past the patience."""
    if t.data.validation is None:
        return
    state, train = t.state, t.cfg.train
    take_task_metrics(t.parts)  # drop training rows not logged yet
    loss = mean_loss(t.model, t.parts, t.data.validation.examples, t.pad_id, batch_size_of(t.cfg))
    extra = take_task_metrics(t.parts, prefix="val_")
    t.run.log_metrics(step=state.global_step, epoch=state.epoch, val_loss=round(loss, 6), **extra)
    t.trackers.log(state.global_step, {"val_loss": round(loss, 6), **extra})
    log.info("step %d: validation loss %.4f", state.global_step, loss)
    if state.overfitting_step is None:
        warn_if_overfitting(t.run, train.overfitting_patience, state)
    if state.best_val_loss is None or loss < state.best_val_loss:
        state.best_val_loss, state.best_step, state.evals_without_improvement = loss, state.global_step, 0
        return
    state.evals_without_improvement += 1
    patience = train.early_stopping_patience
    if patience and state.evals_without_improvement >= patience:
        state.stopped_early = True
        log.info("early stop at step %d: no improvement for %d evaluations", state.global_step, patience)


def warn_if_overfitting(run: Run, patience: int, state: LoopState) -> None:
    """Record the first overfitting warning in metrics.jsonl, run.json and the log."""
    warning = overfitting_warning(run.history(), patience)
    if warning is None:
        return
    state.overfitting_step = state.global_step
    run.log_metrics(step=state.global_step, epoch=state.epoch, warning=warning)
    entry = {"step": state.global_step, "kind": "overfitting", "message": warning}
    run.update_record(warnings=[*run.record["warnings"], entry])
    log.warning("step %d: %s", state.global_step, warning)


def warn_of_template_issues(run: Run, data: PreparedData) -> None:
    """The chat rows whose inference prompt does not round-trip (data/template_check.py), in run.json."""
    issues = getattr(data, "template_issues", None)
    if not issues:
        return
    entry = {"step": 0, "kind": "template", "message": describe_issues(issues)}
    if entry not in run.record["warnings"]:  # a resumed run checks again: one entry
        run.update_record(warnings=[*run.record["warnings"], entry])


def restore_best(run: Run, state: LoopState, ranks: distributed.Ranks, model, optimizer, scheduler) -> int:
    """Put the best evaluation's weights back into the model (train.load_best); returns their step.

    The loop saved a checkpoint at every new best and pruning spares it; loading
    it whole (optimizer too) is harmless once training is over.
    """
    if state.best_step is None or state.best_step == state.global_step:
        return state.global_step
    best = run.checkpoints_dir / checkpoint_name(state.best_step)
    if not verify_checkpoint(best):
        log.warning(
            "best checkpoint (step %d) is not on disk intact; keeping the last weights", state.best_step
        )
        return state.global_step
    ranks.load_checkpoint(best, model, optimizer, scheduler)
    log.info(
        "load_best: the adapter is the one of step %d (validation loss %.4f)",
        state.best_step,
        state.best_val_loss,
    )
    return state.best_step


def _due(every: int | None, step: int, boundary: bool) -> bool:
    return boundary if every is None else step % every == 0 or boundary


def _next_position(state: LoopState, epoch_ends: bool) -> dict:
    """Where a resumed loop starts: the next batch of this epoch, or the next epoch."""
    if epoch_ends:
        return {"epoch": state.epoch + 1, "step_in_epoch": 0}
    return {}


def _last_val_loss(history: list[dict]) -> float | None:
    losses = [row["val_loss"] for row in history if "val_loss" in row]
    return losses[-1] if losses else None


def package_versions() -> dict:
    from importlib.metadata import version

    from tunery.version import __version__

    versions = {"tunery": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "peft"):
        versions[name] = version(name)
    return versions


def _log_to(run: Run) -> logging.Handler:
    if distributed.launched_rank() > 0:
        return logging.NullHandler()  # rank 0 writes train.log
    handler = logging.FileHandler(run.path / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("tunery")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
