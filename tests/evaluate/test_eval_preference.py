"""`tunery eval` on a preference file: win rates of chosen over rejected, base vs tuned, stored and shown."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.tasks.preference_rows import pair_rows
from tests.tasks.test_preference import pref_config
from tunery.errors import TuneryError


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pref-eval")
    train = write_jsonl(folder / "train.jsonl", pair_rows(16))
    valid = write_jsonl(folder / "valid.jsonl", pair_rows(8))
    run = tunery.train(pref_config(tiny_model_dir, train, valid, folder / "runs", max_steps=12), quiet=True)
    return run, valid


def test_tunery_eval_reports_win_rates_that_match_training_and_stores_them(dpo_run):
    from tunery.cli import app
    from tunery.evaluate.results import load_evaluations, load_examples

    run, valid = dpo_run
    result = CliRunner().invoke(app, ["eval", str(run.path), "--data", str(valid), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["examples"] == 8 and summary["preference"]["beta"] == 0.5
    tuned, base = summary["tuned"], summary["base"]
    # The implicit reward against the base is what the run's validation logged at its end.
    last = [r for r in run.history() if "val_reward_accuracy" in r][-1]
    assert tuned["reward_accuracy"] == pytest.approx(last["val_reward_accuracy"], abs=1e-6)
    assert tuned["reward_margin"] == pytest.approx(last["val_reward_margin"], abs=1e-4)
    assert tuned["reward_accuracy"] >= 0.75 and tuned["win_rate"] >= base["win_rate"]
    assert tuned["logp_margin"] > base["logp_margin"] and "reward_accuracy" not in base
    assert load_evaluations(run.path)["valid"]["tuned"] == tuned
    rows = load_examples(run.path, "valid")
    assert len(rows) == 8 and rows[0]["line"] == 1 and rows[0]["reference"] == pair_rows(1)[0]["chosen"]
    assert rows[0]["tuned"].startswith(("chosen wins", "rejected wins"))
    assert set(rows[0]["scores"]) == {"base", "tuned"}


def test_the_text_output_and_the_report_show_the_win_rate(dpo_run):
    from tunery.cli import app
    from tunery.evaluate import write_report

    run, valid = dpo_run
    result = CliRunner().invoke(app, ["eval", str(run.path), "--data", str(valid), "--name", "pairs"])
    assert result.exit_code == 0, result.output
    assert "(8 pairs)" in result.stdout and "win_rate" in result.stdout and "reward_accuracy" in result.stdout
    html = write_report(run.path).read_text(encoding="utf-8")
    assert "win_rate" in html and "reward_accuracy" in html


def test_without_base_there_is_no_reward_and_limit_cuts_the_pairs(dpo_run):
    from tunery.evaluate import evaluate_run

    run, valid = dpo_run
    summary = evaluate_run(run.path, valid, with_base=False, limit=3, name="nobase")
    assert isinstance(summary, dict)
    assert summary["base"] is None and summary["examples"] == 3
    assert "reward_accuracy" not in summary["tuned"] and 0.0 <= summary["tuned"]["win_rate"] <= 1.0


def test_a_chained_run_is_judged_against_the_sft_model_it_started_from(tiny_model_dir, tmp_path):
    """The base of a run started from an SFT run is that SFT model, not the raw base model."""
    from tunery.evaluate import evaluate_run

    sft_data = write_jsonl(tmp_path / "sft.jsonl", chat_rows(8))
    sft = tunery.train({"model": str(tiny_model_dir), "data": {"train": str(sft_data), "max_length": 64},
                        "lora": {"r": 4},
                        "train": {"max_steps": 3, "batch_size": 4, "lr": 5e-2},
                        "output_dir": str(tmp_path / "runs"), "run_name": "sft"}, quiet=True)  # fmt: skip
    pairs = write_jsonl(tmp_path / "p.jsonl", pair_rows(8)), write_jsonl(tmp_path / "v.jsonl", pair_rows(4))
    config = pref_config(str(sft.path), *pairs, tmp_path / "runs", max_steps=2) | {"run_name": "dpo"}
    dpo = tunery.train(config, quiet=True)
    sft_scores = evaluate_run(sft.path, pairs[1], name="pairs")
    dpo_scores = evaluate_run(dpo.path, pairs[1], name="pairs")
    assert isinstance(sft_scores, dict) and isinstance(dpo_scores, dict)
    assert dpo_scores["base"]["logps_chosen"] == pytest.approx(sft_scores["tuned"]["logps_chosen"], abs=1e-4)
    assert sft_scores["base"]["logps_chosen"] != pytest.approx(sft_scores["tuned"]["logps_chosen"], abs=1e-4)


def test_unpaired_and_broken_files_are_refused_with_the_line_and_field(dpo_run, tmp_path):
    from tunery.evaluate import evaluate_run

    run, _ = dpo_run
    unpaired = write_jsonl(tmp_path / "kto.jsonl", pair_rows(2, "unpaired"))
    with pytest.raises(TuneryError, match="unpaired.*needs chosen/rejected pairs"):
        evaluate_run(run.path, unpaired)
    broken = write_jsonl(
        tmp_path / "bad.jsonl", [*pair_rows(2), {"prompt": "q", "chosen": "a", "rejected": "a"}]
    )
    with pytest.raises(TuneryError, match="line 3, field 'rejected': is the same as chosen"):
        evaluate_run(run.path, broken)
    assert not (run.path / "eval" / "bad").exists() and not (run.path / "eval" / "kto").exists()
