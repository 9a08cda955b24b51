"""Load a finished run (base model + trained adapter) and generate with it.

model, tokenizer = load_run_model("runs/demo")
print(generate(model, tokenizer, [[{"role": "user", "content": "Hi"}]])[0])
"""

from __future__ import annotations

from pathlib import Path

from tunery.data.generation import generate_texts
from tunery.data.tokenize import ensure_chat_template
from tunery.methods import get_method
from tunery.methods.weights import WEIGHTS_FILE, load_trained_model
from tunery.models import (
    load_tokenizer,
    pick_device,
    pick_dtype,
    require_safetensors,
    resolve_model,
    set_threads,
)
from tunery.run import Run
from tunery.tasks import get_task
from tunery.tasks.classification import read_labels


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
    base = task.load_model(resolve_model(config.model.name), target, dtype, config, labels, **load_kwargs)
    tokenizer = load_tokenizer(str(adapter))
    if config.task != "classification":
        ensure_chat_template(tokenizer)
    if trained_weights:
        return load_trained_model(base, adapter).eval(), tokenizer
    from peft import PeftModel

    return PeftModel.from_pretrained(base, adapter).eval(), tokenizer


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
