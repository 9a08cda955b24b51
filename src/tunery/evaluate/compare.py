"""Base model versus fine-tuned model on the same held-out examples: loss, perplexity, exact match.

Both are the same weights in memory: the base is the PEFT model with its
adapter disabled, so the comparison costs one model load.

    report = evaluate_run("runs/demo", "examples/data/valid.jsonl")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tunery.data.prepare import load_checked
from tunery.data.tokenize import encode_examples
from tunery.data.types import Example
from tunery.inference import generate, load_run_model
from tunery.run import Run
from tunery.training.loss import causal_lm_parts, mean_loss


@dataclass
class ModelScores:
    loss: float
    perplexity: float
    exact_match: float | None = None


@dataclass
class Evaluation:
    data: str
    examples: int
    tuned: ModelScores
    base: ModelScores | None = None
    samples: list[dict] = field(default_factory=list)  # prompt, reference, base and tuned answers

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def evaluate_run(
    run_path: str | Path, data_path: str | Path | None = None, with_base: bool = True, limit: int | None = None,
    max_new_tokens: int = 64,
) -> Evaluation:  # fmt: skip
    run = Run.open(run_path)
    config = run.config
    data_path = str(data_path or config.data.validation or config.data.train)
    model, tokenizer = load_run_model(run.path)
    examples = load_checked(data_path, config.data.format).examples[:limit]
    encoded = encode_examples(examples, tokenizer, config.data.max_length, config.data.train_on)
    prompts, references = split_last_answer(examples)

    def score() -> tuple[ModelScores, list[str]]:
        loss = mean_loss(model, causal_lm_parts(model), encoded.examples, pad_id=tokenizer.pad_token_id)
        answers = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens) if prompts else []
        return ModelScores(loss, math.exp(min(loss, 50.0)), exact_match(answers, references)), answers

    tuned, tuned_answers = score()
    base, base_answers = None, [None] * len(prompts)
    if with_base:
        with model.disable_adapter():
            base, base_answers = score()
    samples = [
        {"prompt": p[-1]["content"], "reference": r, "base": b, "tuned": t}
        for p, r, b, t in zip(prompts, references, base_answers, tuned_answers, strict=True)
    ]
    evaluation = Evaluation(data_path, len(encoded.examples), tuned, base, samples)
    run.update_record(evaluation={k: v for k, v in evaluation.to_dict().items() if k != "samples"})
    return evaluation


def split_last_answer(examples: list[Example]) -> tuple[list[list[dict]], list[str]]:
    """For chat examples: the conversation before the last assistant turn, and that turn."""
    prompts, references = [], []
    for example in examples:
        if example.kind != "chat" or example.messages[-1].role != "assistant":
            continue
        prompts.append([{"role": m.role, "content": m.content} for m in example.messages[:-1]])
        references.append(example.messages[-1].content)
    return prompts, references


def exact_match(answers: list[str], references: list[str]) -> float | None:
    if not references:
        return None
    return sum(a.strip() == r.strip() for a, r in zip(answers, references, strict=True)) / len(references)
