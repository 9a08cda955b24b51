"""Classification scores from predicted and true labels: accuracy, F1, per-class precision/recall, confusion matrix.

Counting, written here rather than taken from scikit-learn: these few lines
would otherwise bring scikit-learn and SciPy (well over 100 MB) into every
install. A class never predicted has precision 0, as in scikit-learn with
`zero_division=0`.

    scores = classification_scores(predictions=["a", "b"], references=["a", "a"])
    scores.accuracy, scores.macro_f1, scores.confusion  # rows: true label, columns: predicted
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ClassificationScores:
    accuracy: float
    macro_f1: float
    micro_f1: float
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    labels: list[str]  # order of the confusion matrix's rows and columns
    confusion: list[list[int]]  # confusion[i][j]: examples of labels[i] predicted as labels[j]

    def to_dict(self) -> dict:
        return asdict(self)


def classification_scores(
    predictions: list[str], references: list[str], labels: list[str] | None = None
) -> ClassificationScores:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    known = list(labels or [])
    labels = known + sorted((set(references) | set(predictions)) - set(known))  # answers off the list too
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for predicted, true in zip(predictions, references, strict=True):
        confusion[index[true]][index[predicted]] += 1
    per_class = {label: _class_scores(confusion, i) for i, label in enumerate(labels)}
    total_tp = sum(confusion[i][i] for i in range(len(labels)))
    # Single-label: every wrong prediction is one false positive and one false negative,
    # so micro precision = micro recall = micro F1 = accuracy over the labels counted.
    micro = _ratio(total_tp, len(references))
    return ClassificationScores(
        accuracy=micro,
        macro_f1=sum(scores["f1"] for scores in per_class.values()) / max(len(labels), 1),
        micro_f1=micro,
        per_class=per_class,
        labels=labels,
        confusion=confusion,
    )


def _class_scores(confusion: list[list[int]], i: int) -> dict[str, float]:
    tp = confusion[i][i]
    predicted = sum(row[i] for row in confusion)
    support = sum(confusion[i])
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0
