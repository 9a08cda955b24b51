"""Load a finished run (base model + trained adapter), generate with it, fold it into its base.

model, tokenizer = load_run_model("runs/demo")
print(generate(model, tokenizer, [[{"role": "user", "content": "Hi"}]])[0])
merge_run("runs/demo", "out/merged")          # tunery merge: a model plain transformers loads
path, parent = starting_model(cfg)            # a run started from another (preference.init_from)

Loading, merging and starting from a finished run live in one module because they call each
other: a run started from another loads its parent merged, and merging loads the run.

A run started from another (`preference.init_from: runs/<sft>` or `model.name: runs/<sft>`) has
the earlier run's weights folded into its base once and kept under $TUNERY_HOME/merged/<hash of
its adapter>, so it loads an ordinary model folder: a fresh adapter trains on top, and switching
that adapter off gives the earlier run's model, which preference tuning takes as its reference.
The parent is recorded in run.json (`parent`), so the registry shows the chain.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from tunery.config import TuneryConfig
from tunery.config.registry import method_spec
from tunery.data.formats import content_hash
from tunery.data.generation import generate_texts
from tunery.data.tokenize import ensure_chat_template
from tunery.errors import TuneryError
from tunery.methods import get_method, is_peft
from tunery.methods.weights import WEIGHTS_FILE, load_trained_model
from tunery.models import (
    load_tokenizer,
    model_construction,
    pick_device,
    pick_dtype,
    require_safetensors,
    resolve_model,
    set_threads,
    tunery_home,
)
from tunery.run import Run
from tunery.tasks import get_task
from tunery.tasks.classification import read_labels

log = logging.getLogger("tunery.inference")


def load_run_model(run_path: str | Path, device: str = "auto", quantized: bool = True):
    """(model in eval mode, tokenizer) for a run of any method and task.

    PEFT methods give a PeftModel; full/freeze/progressive give the base model with the
    trained tensors. Either way the base model is one `with model.disable_adapter():` away.
    qlora runs load their base in 4/8 bits as trained, unless `quantized=False` (merging).
    """
    run = Run.open(run_path)
    adapter = run.adapter_dir
    trained_weights = (adapter / WEIGHTS_FILE).exists()
    if not (trained_weights or (adapter / "adapter_config.json").exists()):
        raise FileNotFoundError(f"{run.path} has no trained adapter yet (status: {run.record['status']})")
    require_safetensors(adapter, "adapter")  # a run folder may come from anywhere
    config = run.config
    set_threads(config.train.threads)
    target = pick_device(device if device != "auto" else config.model.device)
    method, task = get_method(config.method), get_task(config.task)
    load_kwargs = {}
    if quantized:
        options = method.options(config)
        method.check(options, target)
        load_kwargs = method.load_kwargs(options, target)
    labels = read_labels(adapter) if config.task == "classification" else None
    dtype = pick_dtype(config.model.dtype, target)
    base_path = starting_model(config)[0]
    base = task.load_model(base_path, target, dtype, config, labels, **load_kwargs)
    tokenizer = load_tokenizer(str(adapter))
    if config.task != "classification":
        ensure_chat_template(tokenizer)
    if trained_weights:
        return load_trained_model(base, adapter).eval(), tokenizer
    from peft import PeftModel

    with model_construction():
        tuned = PeftModel.from_pretrained(base, adapter)
    return tuned.eval(), tokenizer


def generate(
    model,
    tokenizer,
    conversations: list[list[dict]],
    max_new_tokens: int = 128,
    batch_size: int = 16,
    skip_special_tokens: bool = True,
    sampling: dict | None = None,
) -> list[str]:
    """Greedy answers to each conversation's next assistant turn, batched (`data.generation.generate_texts`).

    `sampling` (e.g. {"temperature": 0.7, "top_p": 0.9}) samples instead; seed torch first to repeat it.
    """
    prompts = [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
    answers = generate_texts(
        model, tokenizer, prompts, max_new_tokens, batch_size, sampling,
        skip_special_tokens=skip_special_tokens, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return [answer.strip() for answer in answers]


class CannotMerge(TuneryError, ValueError):
    """The run's method has no weights to fold into the base model (prefix, prompt, ...)."""

    code = "cannot_merge"


def merge_run(run_path: str | Path, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    merged, tokenizer = load_merged(run_path)
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


def load_merged(run_path: str | Path):
    """(merged model, tokenizer) in memory, on the CPU: what `merge_run` saves and the GGUF export writes."""
    method = Run.open(run_path).config.method
    if not method_spec(method).mergeable:
        raise CannotMerge(
            f"method={method} adds learned tokens or prompts at run time instead of changing weights, so there "
            f"is nothing to fold into the base model; use the run directly (tunery chat/eval {run_path})"
        )
    # qlora: merge into the full-precision base; folding into 4-bit weights would round the update away.
    model, tokenizer = load_run_model(run_path, device="cpu", quantized=False)
    return (model.merge_and_unload() if is_peft(model) else model), tokenizer


class ParentRunError(TuneryError, ValueError):
    """The run named to start from is not a finished run with weights."""

    code = "invalid_config"


def parent_run_path(cfg: TuneryConfig) -> Path | None:
    """The run this one starts from: preference.init_from, or model.name when it names a run folder."""
    if cfg.preference.init_from:
        return Path(cfg.preference.init_from)
    name = Path(cfg.model.name).expanduser()
    return name if (name / "run.json").exists() else None


def starting_model(cfg: TuneryConfig) -> tuple[str, dict | None]:
    """The model folder to load, and the parent run's record for run.json (None without one)."""
    parent = parent_run_path(cfg)
    if parent is None:
        return resolve_model(cfg.model.name), None
    if not (parent / "run.json").exists():
        raise ParentRunError(f"preference.init_from: {parent} is not a run folder (no run.json)")
    run = Run.open(parent)
    if run.record.get("status") != "completed" or not run.adapter_dir.exists():
        raise ParentRunError(
            f"preference.init_from: run {parent} has not completed (status: {run.record.get('status')}); "
            "start from a finished run"
        )
    digest = content_hash(run.adapter_dir)
    merged = tunery_home() / "merged" / digest[:32]
    if not (merged / "config.json").exists():
        log.info("merging %s into its base once, to start from it", parent)
        merge_run(parent, merged)
    return str(merged), {"run": str(parent.resolve()), "name": run.name, "method": run.config.method,
                         "task": run.config.task, "adapter_hash": digest}  # fmt: skip
