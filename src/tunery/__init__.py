"""tunery: fine-tune LLMs on your own data.

    import tunery
    run = tunery.train("examples/demo.yaml", overrides=["lora.r=16"])
    print(run.metrics)

Heavy modules (torch, transformers) load only when a function that needs them is called.
"""

from __future__ import annotations

from tunery.version import __version__


def train(config=None, overrides: list[str] | None = None, resume=None, quiet: bool = False):
    """Fine-tune from a config (a YAML path, a dict or a `TuneryConfig`) and return the `Run`.

    `resume` is a run directory: its config is used (with `overrides`) and training
    continues from its newest complete checkpoint.
    """
    from tunery.training.recipe import train as _train

    return _train(config, overrides=overrides, resume=resume, quiet=quiet)


__all__ = ["__version__", "train"]
