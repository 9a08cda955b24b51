"""Store a classifier's scores as one of the run's evaluations (eval/<name>/), whoever predicted the labels.

evaluate_predictions("runs/cls", predictions=["a", "b"], references=["a", "a"], name="test")
"""

from __future__ import annotations

from tunery.evaluate.results import save_evaluation
from tunery.run import Run
from tunery.tasks.label_scores import classification_scores


def evaluate_predictions(
    run_path, predictions: list[str], references: list[str], name: str = "classification",
    data: str = "", texts: list[str] | None = None, labels: list[str] | None = None,
) -> dict:  # fmt: skip
    """Score a classifier's predictions and store them as the run's evaluation `name` (eval/<name>/).

    The path every classification evaluation goes through, whoever predicted the labels.
    A base model has no trained head to compare with, so only the tuned model is scored.
    """
    scores = classification_scores(predictions, references, labels)
    summary = {
        "name": name,
        "data": data,
        "examples": len(references),
        "tuned": {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1, "micro_f1": scores.micro_f1},
        "base": None,
        "classification": scores.to_dict(),
    }
    texts = texts or [""] * len(references)
    rows = [
        {"line": i, "prompt": text, "reference": true, "base": None, "tuned": predicted,
         "scores": {"tuned": {"exact": float(predicted == true)}}}
        for i, (text, true, predicted) in enumerate(zip(texts, references, predictions, strict=True), start=1)
    ]  # fmt: skip
    save_evaluation(run_path, name, summary, rows)
    Run.open(run_path).update_record(evaluation=summary)
    return summary
