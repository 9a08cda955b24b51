"""How tunery keeps third-party libraries quiet: the terminal and the job log are for our own output."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Keep the terminal for our own output: no loading bars, no warnings meant for library authors."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading bars follow it
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)  # optional CPU kernel package
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=DeprecationWarning)
