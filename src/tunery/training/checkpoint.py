"""Checkpoints you can trust: written aside, verified, then renamed into place.

A checkpoint is a folder `checkpoints/step-NNNNNN/` holding the trainable weights (a PEFT
adapter, or `trainable.safetensors` for full/freeze/progressive), optimizer and scheduler
state, the loop position (`state.json`) and the random-number state (`rng.pt`); under
DeepSpeed its own sharded state in `deepspeed/` (and the `zero_to_*.py` scripts it copies
beside it) stands for the optimizer and scheduler files. Everything loads with
`torch.load(weights_only=True)` or as JSON. The folder is first written as
`.tmp-step-NNNNNN`, closed with a `COMPLETE` manifest of the sizes and sha256 digests of
every file in it (sub-folders too), then renamed: a process killed mid-save leaves a
temporary folder that resume ignores, and a file damaged later fails verification, so
resume falls back to the previous one.

Listing and verification need no torch (the job runner lists checkpoints in the service
process); torch is imported where tensors are saved or loaded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from tunery.errors import TuneryError

MANIFEST = "COMPLETE"


class CheckpointError(TuneryError, RuntimeError):
    code = "checkpoint_failed"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint folder holds: `step-000042` -> 42."""
    return int(path.name.removeprefix("step-"))


def staging_folder(folder: Path, step: int) -> Path:
    """Where checkpoint `step` is written before it is renamed into place (resume ignores it)."""
    return folder / f".tmp-{checkpoint_name(step)}"


def save_checkpoint(
    folder: Path, step: int, model, optimizer, scheduler, state: dict, keep: int, staged: bool = False
) -> Path:
    """Write checkpoint `step` atomically and prune all but the newest `keep` complete ones.

    `staged`: the staging folder already holds an engine's own state (DeepSpeed's shards, written by
    every rank; training/zero.py), which then stands for the optimizer and scheduler files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    staging = staging_folder(folder, step)
    if not staged:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(exist_ok=staged)
        write_checkpoint_files(staging, model, optimizer, scheduler, state)
        _write_manifest(staging)
    except Exception as err:
        # torch.save reports a full disk as a bare RuntimeError, so look at the disk, not the error.
        full = _out_of_space(err, folder)
        shutil.rmtree(staging, ignore_errors=True)  # no half-written checkpoint stays behind
        raise CheckpointError(_save_failed(folder, step, err, full)) from err
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _fsync_dir(folder)
    prune_checkpoints(folder, keep=keep, protect={state.get("best_step")})
    return final


def _out_of_space(err: Exception, folder: Path) -> bool:
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    if "No space left" in str(err) or "File too large" in str(err):
        return True
    return shutil.disk_usage(folder).free < 1 << 20


def _save_failed(folder: Path, step: int, err: Exception, full: bool) -> str:
    previous = latest_checkpoint(folder)
    kept = f"{previous.name} is intact" if previous else "no earlier checkpoint exists"
    cause = "the disk is full" if full else f"{type(err).__name__}: {err}"
    fix = "free some space (or lower train.keep_checkpoints), then" if full else "fix that, then"
    return (
        f"could not save checkpoint {checkpoint_name(step)} in {folder}: {cause}. Nothing half-written was kept "
        f"and {kept}; {fix} resume with `tunery train --resume {folder.parent}`"
    )


def write_checkpoint_files(target: Path, model, optimizer, scheduler, state: dict) -> None:
    import torch

    from tunery.methods.weights import save_weights

    save_weights(model, target)
    if optimizer is not None:  # None: an engine's own state holds them (see save_checkpoint)
        torch.save(optimizer.state_dict(), target / "optimizer.pt")
        torch.save(scheduler.state_dict(), target / "scheduler.pt")
    torch.save(_rng_state(), target / "rng.pt")
    (target / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")


def _write_manifest(target: Path) -> None:
    """Every file of the folder, sub-folders' too (an engine's state), by its path inside it."""
    paths = sorted(path for path in target.rglob("*") if path.is_file())
    files = {
        path.relative_to(target).as_posix(): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in paths
    }
    for path in paths:
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    (target / MANIFEST).write_text(json.dumps(files, indent=2), encoding="utf-8")


def verify_checkpoint(path: Path) -> bool:
    """Whether every file the manifest names is there with its size and sha256 (a pruned folder: no)."""
    try:
        files = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        return all(
            (path / name).stat().st_size == expected["bytes"] and _sha256(path / name) == expected["sha256"]
            for name, expected in files.items()
        )
    except (OSError, ValueError, TypeError, KeyError):  # missing, pruned meanwhile, or not a manifest
        return False


def checkpoint_folders(folder: Path) -> list[Path]:
    """Every renamed-into-place checkpoint folder, newest first, verified or not."""
    if not folder.exists():
        return []
    return sorted(folder.glob("step-*"), key=lambda p: p.name, reverse=True)


def complete_checkpoints(folder: Path, skip_steps: Collection[int] = ()) -> list[Path]:
    """Complete, verified checkpoints, newest first; those of `skip_steps` are neither read nor listed."""
    candidates = [path for path in checkpoint_folders(folder) if checkpoint_step(path) not in skip_steps]
    return [path for path in candidates if verify_checkpoint(path)]


def latest_checkpoint(folder: Path) -> Path | None:
    found = complete_checkpoints(folder)
    return found[0] if found else None


def prune_checkpoints(folder: Path, keep: int, protect: set | None = None) -> None:
    protected = {checkpoint_name(step) for step in (protect or set()) if step is not None}
    for stale in folder.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for old in complete_checkpoints(folder)[keep:]:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, model, optimizer, scheduler, engine_state: Callable | None = None) -> dict:
    """Restore weights, optimizer, scheduler and RNG in place; return the loop state.

    `engine_state(path)`, when given, restores weights, optimizer and scheduler from an engine's own
    state in the checkpoint instead (DeepSpeed: training/zero.py).
    """
    import torch

    from tunery.methods.weights import load_weights

    if not verify_checkpoint(path):
        raise CheckpointError(
            f"checkpoint {path} is incomplete or damaged (its {MANIFEST} manifest does not match)"
        )
    if engine_state is not None:
        engine_state(path)
    else:
        try:
            load_weights(model, path)
        except FileNotFoundError as err:
            raise CheckpointError(str(err)) from None
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
