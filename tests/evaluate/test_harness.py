"""`tunery eval --harness` offline: local lm-eval tasks from JSONL (multiple-choice and generate-until)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_jsonl
from tunery.cli import app
from tunery.evaluate.harness import HarnessError, harness_evaluate

MC_TASK = """task: tiny_orders_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "item {{{{item}}}} quantity"
doc_to_choice: ["0", "1", "2", "3", "4"]
doc_to_target: "{{{{quantity}}}}"
metric_list:
  - metric: acc
"""
GEN_TASK = """task: tiny_orders_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "item {{{{item}}}} quantity"
doc_to_target: " {{{{quantity}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("harness-tasks")
    data = write_jsonl(folder / "orders.jsonl", [{"item": i % 7, "quantity": str(i % 5)} for i in range(6)])
    (folder / "tiny_orders_mc.yaml").write_text(MC_TASK.format(data=data), encoding="utf-8")
    (folder / "tiny_orders_gen.yaml").write_text(GEN_TASK.format(data=data), encoding="utf-8")
    return folder


def test_harness_scores_base_and_tuned_into_the_run_its_report_and_record(two_runs, task_dir):
    from tunery.evaluate.report import render_report
    from tunery.run import Run

    run = two_runs[1]
    result = CliRunner().invoke(
        app, ["eval", str(run.path), "--harness", "tiny_orders_mc,tiny_orders_gen", "--harness-include",
              str(task_dir), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    for model in ("base", "tuned"):
        assert 0.0 <= summary[model]["tiny_orders_mc/acc"] <= 1.0
        assert 0.0 <= summary[model]["tiny_orders_gen/exact_match"] <= 1.0
    folder = run.path / "eval" / "harness"
    raw = json.loads((folder / "tuned_results.json").read_text())
    assert raw["results"]["tiny_orders_mc"]["acc,none"] == summary["tuned"]["tiny_orders_mc/acc"]
    assert (folder / "base_results.json").is_file() and (folder / "metrics.json").is_file()
    record = Run.open(run.path).record
    assert record["metrics"]["harness"]["tuned"] == summary["tuned"]
    assert "tiny_orders_mc/acc" in render_report(Run.open(run.path))


def test_an_unknown_task_is_refused_before_any_model_loads(two_runs, task_dir):
    with pytest.raises(HarnessError, match="unknown task.*no_such_task.*--harness-include"):
        harness_evaluate(two_runs[0].path, ["no_such_task"], include=[task_dir])


def test_a_missing_include_folder_is_named(two_runs, tmp_path):
    with pytest.raises(HarnessError, match="--harness-include .*nowhere: no such file or folder"):
        harness_evaluate(two_runs[0].path, ["tiny_orders_mc"], include=[tmp_path / "nowhere"])
