"""Base model versus fine-tuned model on the same held-out examples.

Both are the same weights in memory: the base is the PEFT model with its
adapter disabled, so the comparison costs one model load. For each model:
loss and perplexity on the supervised tokens, perplexity on general text (the
forgetting check, see forgetting.py), and answers generated for every chat
example, scored against the reference (metrics.py) and by the user's format
checks (checks.py). Results go to `eval/<name>/` in the run (results.py).

    evaluation = evaluate_run("runs/demo", "examples/data/valid.jsonl", checks=["json"])
    evaluation.tuned.rougeL, evaluation.forgetting["change_percent"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunery.data.formats import load_checked
from tunery.data.preference import is_preference_file
from tunery.data.tokenize import encode_examples
from tunery.data.types import Example
from tunery.evaluate.checks import FormatCheck, check_answer, parse_check, pass_rates
from tunery.evaluate.forgetting import forgetting_summary, general_text_examples
from tunery.evaluate.metrics import answer_scores, corpus_scores, mean
from tunery.evaluate.results import save_evaluation
from tunery.inference import generate, load_run_model
from tunery.nn.loss import causal_lm_parts, mean_loss
from tunery.run import Run


@dataclass
class ModelScores:
    loss: float
    perplexity: float
    general_perplexity: float | None = None  # on the shipped general text: the forgetting check
    exact_match: float | None = None
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None  # noqa: N815 - the metric's own name
    bleu: float | None = None
    chrf: float | None = None
    response_chars: float | None = None
    response_tokens: float | None = None
    formats: dict[str, float] = field(default_factory=dict)  # check name -> share of answers passing


@dataclass
class Question:
    """A chat example split before its last assistant turn: what the model is asked, and the answer wanted."""

    line: int
    messages: list[dict]
    reference: str


@dataclass
class Evaluation:
    name: str
    data: str
    examples: int
    tuned: ModelScores
    base: ModelScores | None = None
    forgetting: dict = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    generation: dict = field(default_factory=dict)  # the decoding settings used
    samples: list[dict] = field(default_factory=list)  # per example: prompt, reference, outputs, scores

    def summary(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k != "samples"}

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_run(
    run_path: str | Path, data_path: str | Path | None = None, with_base: bool = True, limit: int | None = None,
    max_new_tokens: int = 64, checks: Sequence[str | FormatCheck] = (), temperature: float | None = None,
    top_p: float = 1.0, seed: int = 0, name: str | None = None,
) -> Evaluation | dict:  # fmt: skip
    """Evaluate a run (and its base model) and store the results in `eval/<name>/` of the run.

    A task=classification run is scored by `evaluate_classifier`, and a preference file (chosen/rejected
    pairs) by `evaluate.preference.evaluate_preferences`; both return their summary (a dict).

    Generation is greedy unless `temperature` is given; sampling is seeded with
    `seed`, the same for base and tuned, so a rerun gives the same answers.
    """
    import torch

    run = Run.open(run_path)
    config = run.config
    data_path = str(data_path or config.data.validation or config.data.train)
    if config.task == "classification":
        return evaluate_classifier(run, data_path, limit, name or Path(data_path).stem)
    if is_preference_file(data_path):  # chosen/rejected pairs: win rates, base vs tuned (preference.py)
        from tunery.evaluate.preference import evaluate_preferences

        return evaluate_preferences(run.path, data_path, with_base, limit, name)
    format_checks = [parse_check(c) if isinstance(c, str) else c for c in checks]
    model, tokenizer = load_run_model(run.path)
    examples = load_checked(data_path, config.data.format).examples[:limit]
    encoded = encode_examples(examples, tokenizer, config.data.max_length, config.data.train_on).examples
    general = encode_examples(general_text_examples(), tokenizer, config.data.max_length, "all").examples
    questions = split_questions(examples)
    generation = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    sampling = {"temperature": temperature, "top_p": top_p} if temperature else None
    parts, pad_id = causal_lm_parts(model), tokenizer.pad_token_id

    def score() -> tuple[ModelScores, list[str]]:
        loss = mean_loss(model, parts, encoded, pad_id)
        general_loss = mean_loss(model, parts, general, pad_id)
        torch.manual_seed(seed)
        conversations = [q.messages for q in questions]
        answers = (
            generate(model, tokenizer, conversations, max_new_tokens, sampling=sampling) if questions else []
        )
        return _model_scores(loss, general_loss, answers, questions, tokenizer, format_checks), answers

    tuned, tuned_answers = score()
    base, base_answers = None, None
    if with_base:
        with model.disable_adapter():
            base, base_answers = score()
    assert tuned.general_perplexity is not None, "_model_scores always measures it"
    evaluation = Evaluation(
        name=name or Path(data_path).stem,
        data=data_path,
        examples=len(encoded),
        tuned=tuned,
        base=base,
        forgetting=forgetting_summary(base.general_perplexity if base else None, tuned.general_perplexity),
        checks=[check.name for check in format_checks],
        generation=generation,
        samples=example_rows(questions, base_answers, tuned_answers, format_checks),
    )
    folder = save_evaluation(run.path, evaluation.name, evaluation.summary(), evaluation.samples)
    run.update_record(evaluation={**evaluation.summary(), "folder": str(folder)})
    return evaluation


def evaluate_classifier(run: Run, data_path: str, limit: int | None, name: str) -> dict:
    """A classification run's predicted labels on `data_path`, scored and stored; returns the summary.

    There is no base to compare with: the base model's classification head is untrained.
    """
    from tunery.evaluate.classification import evaluate_predictions
    from tunery.tasks.classification import read_labels

    model, tokenizer = load_run_model(run.path)
    labels = read_labels(run.adapter_dir)
    examples = load_checked(data_path, "classification").examples[:limit]
    texts = [example.text for example in examples]
    predicted = predict_labels(model, tokenizer, texts, labels, run.config.data.max_length)
    references = [str(example.label) for example in examples]
    return evaluate_predictions(run.path, predicted, references, name, data_path, texts, labels)


def predict_labels(
    model, tokenizer, texts: list[str], labels: list[str], max_length: int, batch_size: int = 32
):
    import torch

    tokenizer.padding_side = "right"  # decoders pool the last non-pad token, found from the right
    device = next(model.parameters()).device
    predicted: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
            return_tensors="pt",
        ).to(device)  # fmt: skip
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predicted.extend(labels[i] for i in logits.argmax(-1).tolist())
    return predicted


def split_questions(examples: list[Example]) -> list[Question]:
    """Chat examples that end with an assistant turn, cut before it."""
    return [
        Question(
            example.line,
            [{"role": m.role, "content": m.content} for m in example.messages[:-1]],
            example.messages[-1].content,
        )
        for example in examples
        if example.kind == "chat" and example.messages[-1].role == "assistant"
    ]


def example_rows(
    questions: list[Question], base: list[str] | None, tuned: list[str], checks: list[FormatCheck]
) -> list[dict]:
    """One row per question, for a person to read where the model changed."""
    rows = []
    for i, question in enumerate(questions):
        outputs = {"tuned": tuned[i]} | ({"base": base[i]} if base is not None else {})
        rows.append(
            {
                "line": question.line,
                "prompt": question.messages[-1]["content"] if question.messages else "",
                "reference": question.reference,
                "base": outputs.get("base"),
                "tuned": outputs["tuned"],
                "scores": {
                    model: answer_scores(answer, question.reference) | check_answer(answer, checks)
                    for model, answer in outputs.items()
                },
            }
        )
    return rows


def _model_scores(
    loss: float, general_loss: float, answers: list[str], questions: list[Question], tokenizer, checks
) -> ModelScores:
    generated = corpus_scores(answers, [q.reference for q in questions])
    if answers:
        lengths = [len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
        generated["response_tokens"] = mean(lengths)
    return ModelScores(
        loss=loss,
        perplexity=_perplexity(loss),
        general_perplexity=_perplexity(general_loss),
        formats=pass_rates([check_answer(answer, checks) for answer in answers]),
        **generated,
    )


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: an untrained head's loss would overflow exp
