"""Classification scores against hand counts, and a classifier's evaluation stored in its run."""

from __future__ import annotations

import json

import pytest

from tunery.evaluate.classification import evaluate_predictions
from tunery.tasks.label_scores import classification_scores

REFERENCES = ["a", "a", "b", "c"]
PREDICTIONS = ["a", "b", "b", "a"]


def test_scores_of_a_small_three_class_case():
    scores = classification_scores(PREDICTIONS, REFERENCES)
    assert scores.labels == ["a", "b", "c"]
    assert scores.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]  # rows true, columns predicted
    assert scores.accuracy == 0.5 and scores.micro_f1 == 0.5
    # a: P 1/2 R 1/2 F 1/2;  b: P 1/2 R 1 F 2/3;  c: never predicted, P 0 R 0 F 0
    assert scores.per_class["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores.per_class["b"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert scores.per_class["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_a_prediction_outside_the_label_list_counts_as_wrong():
    scores = classification_scores(["a", "maybe"], ["a", "b"], labels=["a", "b"])
    assert scores.labels == ["a", "b", "maybe"]
    assert scores.accuracy == 0.5
    assert scores.confusion[1] == [0, 0, 1]


def test_predictions_and_references_must_pair_up():
    with pytest.raises(ValueError, match="3 predictions for 2 references"):
        classification_scores(["a", "b", "c"], ["a", "b"])


def test_a_classifiers_predictions_are_stored_as_an_evaluation(tmp_path):
    (tmp_path / "config.yaml").write_text("data: {train: train.jsonl}\n")
    summary = evaluate_predictions(tmp_path, PREDICTIONS, REFERENCES, name="test", texts=["w", "x", "y", "z"])
    stored = json.loads((tmp_path / "eval" / "test" / "metrics.json").read_text())
    assert stored == summary and stored["tuned"]["accuracy"] == 0.5
    assert stored["classification"]["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    rows = [
        json.loads(line) for line in (tmp_path / "eval" / "test" / "examples.jsonl").read_text().splitlines()
    ]
    assert rows[1] == {"line": 2, "prompt": "x", "reference": "a", "base": None, "tuned": "b",
                       "scores": {"tuned": {"exact": 0.0}}}  # fmt: skip


def test_tunery_eval_on_a_classification_run_scores_its_predicted_labels(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    import tunery
    from tests.conftest import write_jsonl
    from tunery.cli import app

    rows = [
        {"text": f"{word} item {i}", "label": label}
        for i in range(6)
        for word, label in (("good", "yes"), ("lazy", "no"))
    ]
    files = [write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "valid.jsonl", rows[:6])]
    run = tunery.train(
        {"model": str(tiny_model_dir), "task": "classification", "data": {"train": str(files[0]), "validation": str(files[1])},
         "train": {"batch_size": 6, "max_steps": 2, "seed": 3}, "output_dir": str(tmp_path / "runs"), "run_name": "cls"},
        quiet=True,
    )  # fmt: skip
    result = CliRunner().invoke(app, ["eval", str(run.path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # The same weights on the same validation rows as training's own end-of-run score.
    assert summary["tuned"]["accuracy"] == pytest.approx(run.metrics["accuracy"], abs=1e-4)
    assert summary["classification"]["labels"] == ["no", "yes"]
    assert sum(map(sum, summary["classification"]["confusion"])) == 6
    assert (run.path / "eval" / "valid" / "examples.jsonl").read_text().count("\n") == 6
