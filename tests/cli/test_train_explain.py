"""`tunery train --explain` prints each auto choice with its reason; `--dry-run` stops before training."""

from __future__ import annotations

import json

from tests.cli.test_cli import single_line, tunery


def test_explain_dry_run_prints_the_choices_and_leaves_a_planned_run(tiny_model_dir, chat_files, tmp_path):
    train, valid = chat_files
    result = tunery(
        "train", "--set", f"model={tiny_model_dir}", "--set", f"data.train={train}", "--set",
        f"data.validation={valid}", "--set", "data.max_length=64", "--set", "lora.r=4", "--set",
        "train.threads=1", "--set", f"output_dir={tmp_path}", "--set", "run_name=plan", "--explain", "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = single_line(result.stdout)
    for key in ("train.epochs", "train.batch_size", "train.lr", "train.load_best"):
        assert key in shown
    assert "24 training rows" in shown and "range test" in shown
    record = json.loads((tmp_path / "plan" / "run.json").read_text())
    assert record["status"] == "planned" and not (tmp_path / "plan" / "adapter").exists()
    assert {c["key"] for c in record["auto"]["choices"]} >= {"train.epochs", "train.batch_size", "train.lr"}
