"""Fold a run's adapter into its base model and save a model plain transformers loads.

tunery merge runs/demo out/merged
AutoModelForCausalLM.from_pretrained("out/merged")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunery.config.registry import method_spec
from tunery.errors import TuneryError
from tunery.inference import load_run_model
from tunery.methods import is_peft
from tunery.run import Run


class CannotMerge(TuneryError, ValueError):
    """The run's method has no weights to fold into the base model (prefix, prompt, ...)."""

    code = "cannot_merge"


def merge_run(run_path: str | Path, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    method = Run.open(run_path).config.method
    if not method_spec(method).mergeable:
        raise CannotMerge(
            f"method={method} adds learned tokens or prompts at run time instead of changing weights, so there "
            f"is nothing to fold into the base model; use the run directly (tunery chat/eval {run_path})"
        )
    # qlora: merge into the full-precision base; folding into 4-bit weights would round the update away.
    model, tokenizer = load_run_model(run_path, device="cpu", quantized=False)
    merged = model.merge_and_unload() if is_peft(model) else model
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.padding_side = "right"
        tokenizer.save_pretrained(staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
