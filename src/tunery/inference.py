"""Load a finished run (base model + trained adapter) and generate with it.

model, tokenizer = load_run_model("runs/demo")
print(generate(model, tokenizer, [[{"role": "user", "content": "Hi"}]])[0])
"""

from __future__ import annotations

from pathlib import Path

from tunery.data.tokenize import ensure_chat_template
from tunery.models import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model, set_threads
from tunery.run import Run


def load_run_model(run_path: str | Path, device: str = "auto"):
    """(PeftModel in eval mode, tokenizer) for a run; the base model is one `disable_adapter()` away."""
    from peft import PeftModel

    run = Run.open(run_path)
    if not (run.adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{run.path} has no trained adapter yet (status: {run.record['status']})")
    config = run.config
    set_threads(config.train.threads)
    target = pick_device(device if device != "auto" else config.model.device)
    base, _ = load_causal_lm(
        resolve_model(config.model.name),
        target,
        pick_dtype(config.model.dtype, target),
        config.model.attn_implementation,
    )
    tokenizer = load_tokenizer(str(run.adapter_dir))
    ensure_chat_template(tokenizer)
    model = PeftModel.from_pretrained(base, run.adapter_dir)
    return model.eval(), tokenizer


def generate(
    model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 128, batch_size: int = 16
) -> list[str]:
    """Greedy answers to each conversation's next assistant turn, batched with left padding."""
    import torch

    prompts = [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
    answers: list[str] = []
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        answers.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return [answer.strip() for answer in answers]
