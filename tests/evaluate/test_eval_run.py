"""`tunery eval` on a tiny run: base and tuned scores, forgetting check, per-example file, seeded sampling."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from tunery.cli import app
from tunery.evaluate import evaluate_run
from tunery.evaluate.forgetting import general_text_examples


def test_the_evaluation_is_stored_in_the_run_as_metrics_and_one_line_per_example(evaluated):
    run, evaluation = evaluated
    folder = run.path / "eval" / "valid"
    assert json.loads((folder / "metrics.json").read_text()) == json.loads(json.dumps(evaluation.summary()))
    lines = [json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines()]
    assert len(lines) == evaluation.examples == 4
    assert set(lines[0]) == {"line", "prompt", "reference", "base", "tuned", "scores"}
    assert lines[0]["prompt"] == "item 0 quantity 0" and lines[0]["reference"] == '{"item": 0, "quantity": 0}'
    assert set(lines[0]["scores"]) == {"base", "tuned"}
    assert set(lines[0]["scores"]["tuned"]) == {
        "exact",
        "rouge1",
        "rouge2",
        "rougeL",
        "chrf",
        "chars",
        "json",
        "max_chars:40",
    }
    assert run.record["evaluation"]["tuned"] == evaluation.summary()["tuned"]


def test_set_scores_agree_with_the_per_example_scores(evaluated):
    _, evaluation = evaluated
    for model in ("base", "tuned"):
        scores = getattr(evaluation, model)
        per_example = [row["scores"][model] for row in evaluation.samples]
        assert scores.exact_match == pytest.approx(sum(s["exact"] for s in per_example) / 4)
        assert scores.rougeL == pytest.approx(sum(s["rougeL"] for s in per_example) / 4)
        assert scores.formats["json"] == pytest.approx(sum(s["json"] for s in per_example) / 4)
        assert scores.response_chars == pytest.approx(sum(s["chars"] for s in per_example) / 4)
        assert scores.perplexity == pytest.approx(math.exp(scores.loss))
    assert evaluation.base.loss != evaluation.tuned.loss


def test_the_forgetting_check_measures_both_models_on_the_shipped_general_text(evaluated, two_runs):
    _, evaluation = evaluated
    assert len(general_text_examples()) >= 30
    forgetting = evaluation.forgetting
    assert forgetting["base_perplexity"] == evaluation.base.general_perplexity
    assert (
        forgetting["tuned_perplexity"] == evaluation.tuned.general_perplexity != forgetting["base_perplexity"]
    )
    expected = 100 * (forgetting["tuned_perplexity"] / forgetting["base_perplexity"] - 1)
    assert forgetting["change_percent"] == pytest.approx(expected)
    # The base is the same model in every run of it: another run sees the same base perplexity.
    other = evaluate_run(two_runs[1].path, max_new_tokens=1, limit=1)
    assert other.base.general_perplexity == pytest.approx(forgetting["base_perplexity"], rel=1e-6)


def test_sampling_with_a_seed_repeats_itself(two_runs):
    path = two_runs[1].path
    first, again = (
        evaluate_run(
            path, with_base=False, temperature=1.0, seed=3, max_new_tokens=6, limit=2, name="sampled"
        )
        for _ in range(2)
    )
    assert [s["tuned"] for s in first.samples] == [s["tuned"] for s in again.samples]
    assert first.generation == {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "seed": 3}
    assert first.base is None and first.forgetting["change_percent"] is None


def test_the_eval_command_prints_base_and_tuned_and_refuses_a_bad_check(two_runs):
    runner = CliRunner()
    path = str(two_runs[1].path)
    result = runner.invoke(
        app, ["eval", path, "--limit", "1", "--max-new-tokens", "2", "--check", "json", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["checks"] == ["json"] and set(summary["tuned"]["formats"]) == {"json"}
    bad = runner.invoke(app, ["eval", path, "--check", "yaml"])
    assert bad.exit_code == 2 and "check 'yaml' is not understood" in bad.output
