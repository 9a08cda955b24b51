"""Fold a run's adapter into its base model and save a model plain transformers loads.

tunery merge runs/demo out/merged
AutoModelForCausalLM.from_pretrained("out/merged")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunery.inference import load_run_model


def merge_run(run_path: str | Path, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    model, tokenizer = load_run_model(run_path, device="cpu")
    merged = model.merge_and_unload()
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
