"""How tunery keeps third-party libraries quiet: the terminal and the job log are for our own output."""

from __future__ import annotations

import logging
import os
import warnings

from tunery.errors import TuneryError


def quiet_libraries() -> None:
    """Keep the terminal for our own output: no loading bars, no warnings meant for library authors."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading bars follow it
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)  # optional CPU kernel package
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=DeprecationWarning)
    if not accelerator_devices():
        # accelerate imports DeepSpeed (when installed) on every save_pretrained, and DeepSpeed's own
        # detection then warns that it fell back to the CPU; on a machine without accelerators that
        # is its answer anyway, said without the warning.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def accelerator_devices() -> list[str]:
    """Device nodes of NVIDIA, AMD/Intel (render) and Ascend accelerators; no torch import."""
    from glob import glob

    return [node for pattern in ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dri/renderD*", "/dev/davinci[0-9]*")
            for node in glob(pattern)]  # fmt: skip


class MissingExtra(TuneryError):
    """A feature's optional dependencies are not installed; the message names the extra to install."""

    code = "missing_extra"


def require_extra(extra: str, feature: str) -> None:
    """Refuse `feature` with one line naming `pip install 'tunery[extra]'` when that extra is missing.

    The extra's packages are read from tunery's own metadata (pyproject's optional-dependencies),
    so the list lives in one place. Run from a source tree without metadata, nothing is checked.
    """
    missing = missing_packages(extra)
    if missing:
        raise MissingExtra(
            f"{feature} needs the [{extra}] extra: pip install 'tunery[{extra}]' (missing: {', '.join(missing)})"
        )


def missing_packages(extra: str) -> list[str]:
    """The distributions of tunery's `extra` (and of the extras it names) that are not installed."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    try:
        wanted = [Requirement(line) for line in requires("tunery") or []]
    except PackageNotFoundError:
        return []
    missing = []
    for requirement in wanted:
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue
        if requirement.name == "tunery":  # an extra made of other extras: tunery[serve]
            missing += [name for inner in sorted(requirement.extras) for name in missing_packages(inner)]
            continue
        try:
            version(requirement.name)
        except PackageNotFoundError:
            missing.append(requirement.name)
    return missing
