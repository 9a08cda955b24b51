"""tunery: fine-tune LLMs on your own data.

    import tunery
    run = tunery.train("examples/demo.yaml", overrides=["lora.r=16"])
    print(run.metrics)

Heavy modules (torch, transformers) load only when a function that needs them is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.version import __version__

if TYPE_CHECKING:
    from tunery.config import TuneryConfig
    from tunery.run import Run


def train(
    config: str | Path | dict[str, Any] | TuneryConfig | None = None,
    overrides: list[str] | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
) -> Run:
    """Fine-tune from a config (a YAML path, a dict or a `TuneryConfig`) and return the `Run`.

    `resume` is a run directory: its config is used (with `overrides`) and training
    continues from its newest complete checkpoint.
    """
    from tunery.training.recipe import train as _train

    return _train(config, overrides=overrides, resume=resume, quiet=quiet)


__all__ = ["__version__", "train"]
