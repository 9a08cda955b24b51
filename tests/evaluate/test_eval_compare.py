"""`tunery compare`: the config keys that differ, metrics side by side, curves overlaid."""

from __future__ import annotations

from typer.testing import CliRunner

from tunery.cli import app
from tunery.evaluate.compare_runs import compare_runs, flatten


def test_only_the_keys_that_differ_are_listed_with_each_runs_metrics(two_runs, evaluated):
    comparison = compare_runs([run.path for run in two_runs])
    assert comparison.names == ["rank4", "rank8"]
    assert comparison.config_differences == {"lora.r": [4, 8]}
    assert comparison.metrics["steps"] == [4, 4]
    assert all(loss is not None for loss in comparison.metrics["train_loss"])
    assert comparison.metrics["eval.perplexity"][0] is not None  # rank4 was evaluated


def test_flatten_names_nested_keys_with_dots():
    assert flatten({"lora": {"r": 8, "target_modules": ["q", "v"]}, "method": "lora"}) == {
        "lora.r": 8, "lora.target_modules": ["q", "v"], "method": "lora"
    }  # fmt: skip


def test_the_compare_command_prints_the_table_and_writes_the_curves(two_runs, tmp_path):
    plot = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["compare", *(str(run.path) for run in two_runs), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "lora.r" in result.output and "rank8" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_compare_needs_two_runs(two_runs):
    result = CliRunner().invoke(app, ["compare", str(two_runs[0].path)])
    assert result.exit_code == 2
