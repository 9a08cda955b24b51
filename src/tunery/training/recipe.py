"""The fine-tuning recipe: set up, loop, save. Read it top to bottom.

    tunery train examples/demo.yaml --set lora.r=16 --set train.epochs=2
    tunery train --resume runs/<run>

The loop is written out rather than handed to a trainer class: the batch plan
(data/batching.py), the loss on supervised tokens only (train/loss.py) and the
checkpoint format (train/checkpoint.py) are where speed and trust come from, and
here they are in plain sight.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tunery.config import TuneryConfig, load_config
from tunery.data.batching import collate, plan_batches, split_by_tokens, supervised_tokens
from tunery.data.prepare import PreparedData
from tunery.data.tokenize import EncodedData, ensure_chat_template
from tunery.errors import TuneryError
from tunery.methods import apply_method, count_parameters, get_method
from tunery.methods.weights import save_weights
from tunery.models import load_tokenizer, pick_device, pick_dtype, resolve_model, set_threads
from tunery.nn.fused_lora import use_fused_lora
from tunery.nn.loss import mean_loss, summed_loss
from tunery.run import Run
from tunery.tasks import get_task
from tunery.tasks.classification import save_labels
from tunery.training import distributed
from tunery.training.checkpoint import (
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from tunery.training.memory import explains_out_of_memory
from tunery.training.overfitting import overfitting_warning
from tunery.training.progress import Progress

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
    config, overrides: list[str] | None = None, resume: str | Path | None = None, quiet: bool = False
) -> Run:
    if resume is not None:
        run = Run.open(resume)
        cfg = load_config(run.path / "config.yaml", overrides)
    else:
        cfg = load_config(config, overrides)
        run = Run.create(cfg)
    run = distributed.for_this_rank(run)
    handler = _log_to(run)
    try:
        return _train(run, cfg, resume is not None, quiet)
    except BaseException as err:
        run.update_record(status="failed", error=f"{type(err).__name__}: {err}")
        log.error("run failed: %s", err)
        raise
    finally:
        logging.getLogger("tunery").removeHandler(handler)
        handler.close()
        distributed.teardown()


def _train(run: Run, cfg: TuneryConfig, resuming: bool, quiet: bool) -> Run:
    # --- set-up -------------------------------------------------------------------------
    setup_started = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    threads = set_threads(cfg.train.threads)
    device = pick_device(cfg.model.device)
    ranks, device = distributed.setup(cfg.distributed, cfg.train.threads, device)
    dtype = pick_dtype(cfg.model.dtype, device)
    model_path = resolve_model(cfg.model.name)
    method, task = get_method(cfg.method), get_task(cfg.task)
    if hasattr(method, "check"):
        method.check(cfg, device)  # before any weight loads: a refusal costs nothing
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    if cfg.task != "classification" and ensure_chat_template(tokenizer):
        log.info("the model has no chat template; using ChatML")
    data = task.prepare(cfg, tokenizer)
    run.pin_datasets(data.sources)
    load_kwargs = method.load_kwargs(cfg, device) if hasattr(method, "load_kwargs") else {}
    model = task.load_model(model_path, device, dtype, cfg, getattr(data, "labels", None), **load_kwargs)

    steps_per_epoch = math.ceil(
        math.ceil(len(data.train.examples) / cfg.train.batch_size) / cfg.train.grad_accum
    )
    total_steps = cfg.train.max_steps or math.ceil(cfg.train.epochs * steps_per_epoch)
    model = apply_method(cfg.method, model, cfg, total_steps)
    if cfg.train.fused_lora and (fused := use_fused_lora(model)):
        log.info("fused LoRA forward/backward on %d layers", fused)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable, total = count_parameters(model)
    model = distributed.wrap(model, ranks, cfg.distributed)
    optimizer, scheduler = build_optimizer(model, cfg, total_steps)

    state = LoopState()
    if resuming and (checkpoint := latest_checkpoint(run.checkpoints_dir)) is not None:
        with ranks.loading(model, optimizer):
            state = LoopState(**load_checkpoint(checkpoint, model, optimizer, scheduler))
        log.info("resumed from %s at step %d", checkpoint.name, state.global_step)
        if hasattr(method, "at_position"):
            method.at_position(model, cfg, state.global_step, state.epoch)

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
    )
    log.info(
        "training %s with %s: %d of %d parameters trainable (%.2f%%), %d steps, %s %s, %d threads",
        cfg.model.name, cfg.method, trainable, total, 100 * trainable / total, total_steps, device, dtype, threads,
    )  # fmt: skip

    # --- loop ---------------------------------------------------------------------------
    started = time.perf_counter()
    first_step_seconds = None  # set-up plus the first optimiser step: what a user waits before progress
    tokens_at_start = state.tokens_seen
    parts = ranks.loss_parts(task.loss_for(model, data, cfg))
    pad_id = tokenizer.pad_token_id
    progress = Progress(total_steps, start=state.global_step, enabled=not quiet and ranks.main)
    with progress:
        while state.global_step < total_steps and not state.stopped_early:
            steps = optimizer_steps(data.train, cfg, state.epoch)
            for micro_batches in steps[state.step_in_epoch :]:
                model.train()
                groups = ranks.shard([[data.train.examples[i] for i in batch] for batch in micro_batches])
                loss, n_tokens = train_step(model, parts, groups, cfg, device, pad_id, state.global_step)
                loss = ranks.sync(model, loss)
                if cfg.train.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                optimizer.step()
                scheduler.step()
                if hasattr(method, "on_step"):  # before zero_grad: AdaLoRA reads this step's gradients
                    next_epoch = state.epoch + (state.step_in_epoch + 1 == len(steps))
                    method.on_step(model, cfg, state.global_step + 1, next_epoch)
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.step_in_epoch += 1
                state.tokens_seen += n_tokens
                if first_step_seconds is None:
                    first_step_seconds = round(time.perf_counter() - setup_started, 3)
                elapsed = time.perf_counter() - started
                tokens_per_s = (state.tokens_seen - tokens_at_start) / max(elapsed, 1e-9)
                progress.update(state.global_step, loss=loss, tokens_per_s=tokens_per_s)
                if state.global_step % cfg.train.log_every == 0:
                    run.log_metrics(
                        step=state.global_step, epoch=state.epoch, loss=round(loss, 6), lr=scheduler.get_last_lr()[0],
                        tokens_per_s=round(tokens_per_s, 2), supervised_tokens=state.tokens_seen,
                    )  # fmt: skip
                epoch_ends = state.step_in_epoch == len(steps)
                last = state.global_step >= total_steps
                if _due(cfg.train.eval_every, state.global_step, epoch_ends or last):
                    evaluate_during_training(run, model, parts, data, cfg, device, pad_id, state)
                new_best = cfg.train.load_best and state.best_step == state.global_step
                if (
                    _due(cfg.train.save_every, state.global_step, epoch_ends or last)
                    or state.stopped_early
                    or new_best
                ):
                    ranks.on_main(
                        save_checkpoint, run.checkpoints_dir, state.global_step, model, optimizer, scheduler,
                        asdict(state) | _next_position(state, epoch_ends), keep=cfg.train.keep_checkpoints,
                    )  # fmt: skip
                if last or state.stopped_early:
                    break
            else:
                state.epoch += 1
                state.step_in_epoch = 0

    # --- save ---------------------------------------------------------------------------
    elapsed = time.perf_counter() - started
    with ranks.loading(model, optimizer):
        adapter_step = (
            restore_best(run, state, model, optimizer, scheduler)
            if cfg.train.load_best
            else state.global_step
        )
    ranks.on_main(save_outputs, run, model, tokenizer, cfg.method, getattr(data, "labels", None))
    history = run.history()
    train_losses = [row["loss"] for row in history if "loss" in row]
    metrics = {
        "train_loss": train_losses[-1] if train_losses else None,
        "val_loss": _last_val_loss(history),
        "best_val_loss": state.best_val_loss,
        "best_step": state.best_step,
        "steps": state.global_step,
        "stopped_early": state.stopped_early,
        "overfitting_step": state.overfitting_step,
        "adapter_step": adapter_step,  # the step whose weights are in adapter/
        "train_seconds": round(elapsed, 2),
        "setup_seconds": round(started - setup_started, 3),  # imports aside: config to first batch
        "first_step_seconds": first_step_seconds,
        "tokens_per_s": round((state.tokens_seen - tokens_at_start) / max(elapsed, 1e-9), 2),
    }
    run.update_record(status="completed", metrics=metrics, error=None)
    log.info("done: %s", metrics)
    if cfg.task == "classification":
        scores = task.scores(model, data, pad_id, cfg.train.batch_size)
        run.update_record(metrics=run.metrics | scores)
        log.info("validation: %s", scores)
    return run


def save_outputs(run: Run, model, tokenizer, method: str, labels: list[str] | None) -> None:
    """adapter/: the trained weights, the labels of a classifier, the tokenizer."""
    save_weights(model, run.adapter_dir, method)
    if labels is not None:
        save_labels(run.adapter_dir, labels)
    tokenizer.save_pretrained(run.adapter_dir)


def build_optimizer(model, cfg: TuneryConfig, total_steps: int):
    from transformers import get_scheduler

    method = get_method(cfg.method)
    if hasattr(method, "param_groups"):
        params = method.param_groups(model, cfg)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = method.optimizer_class(cfg) if hasattr(method, "optimizer_class") else torch.optim.AdamW
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
        lengths, cfg.train.batch_size, cfg.train.seed, epoch, group_by_length=cfg.batching == "grouped"
    )
    accum = cfg.train.grad_accum
    return [batches[i : i + accum] for i in range(0, len(batches), accum)]


@explains_out_of_memory
def train_step(model, parts, groups, cfg, device, pad_id: int, step: int) -> tuple[float, int]:
    """Forward and backward over one optimiser step's micro-batches; returns (mean token loss, supervised tokens)."""
    own_loss = hasattr(parts, "summed_loss")  # classification/seq2seq: the task collates and counts
    count = parts.count if own_loss else supervised_tokens
    n_tokens = max(1, distributed.all_sum(sum(count(group) for group in groups)))  # of all ranks
    total = 0.0
    for group in groups:
        total += _forward_backward(model, parts, group, cfg, device, pad_id, n_tokens, own_loss)
        if not math.isfinite(total):
            lines = sorted(example.line for example in group)
            raise TrainingDiverged(
                f"loss became {total} at step {step + 1} (batch of data lines {lines[:8]}); "
                f"lower train.lr (now {cfg.train.lr}) or check those rows"
            )
    return total / n_tokens, n_tokens


def _forward_backward(model, parts, group, cfg, device, pad_id: int, n_tokens: int, own_loss: bool) -> float:
    """One micro-batch, in passes of at most train.max_batch_tokens tokens; returns its summed loss."""
    total = 0.0
    pieces = [group] if own_loss else split_by_tokens(group, cfg.train.max_batch_tokens, cfg.batching)
    for piece in pieces:
        batch = parts.collate(piece, pad_id) if own_loss else collate(piece, cfg.batching, pad_id)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        loss_sum, _ = summed_loss(model, batch, parts)
        (loss_sum / n_tokens).backward()
        total += loss_sum.item()
    return total


def evaluate_during_training(
    run, model, parts, data: PreparedData, cfg, device, pad_id, state: LoopState
) -> None:
    if data.validation is None:
        return
    loss = mean_loss(model, parts, data.validation.examples, pad_id, cfg.train.batch_size)
    run.log_metrics(step=state.global_step, epoch=state.epoch, val_loss=round(loss, 6))
    log.info("step %d: validation loss %.4f", state.global_step, loss)
    if state.overfitting_step is None:
        warn_if_overfitting(run, cfg.train.overfitting_patience, state)
    if state.best_val_loss is None or loss < state.best_val_loss:
        state.best_val_loss, state.best_step, state.evals_without_improvement = loss, state.global_step, 0
        return
    state.evals_without_improvement += 1
    patience = cfg.train.early_stopping_patience
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


def restore_best(run: Run, state: LoopState, model, optimizer, scheduler) -> int:
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
    load_checkpoint(best, model, optimizer, scheduler)
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
