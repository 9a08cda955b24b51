"""`tunery data audit RUN`: the worst rows in the terminal, the tables on disk, a cleaned dataset version."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import tunery
from tests.cli.test_cli import single_line
from tests.cli.test_cli import tunery as tunery_command
from tests.conftest import chat_rows, write_jsonl
from tests.training.test_train import config_for
from tunery.cli import app

WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit-cli")
    files = (
        write_jsonl(folder / "train.jsonl", chat_rows(12)),
        write_jsonl(folder / "valid.jsonl", chat_rows(4)),
    )
    return tunery.train(config_for(tiny_model_dir, files, folder / "runs", max_steps=2), quiet=True)


def audit(*args: str):
    result = CliRunner().invoke(app, ["data", "audit", *args], env=WIDE)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def test_the_table_shows_the_worst_rows_and_says_where_the_files_are(run, tmp_path):
    rows = chat_rows(9)
    rows[3]["messages"][0]["content"] = "[bold red]not markup[/] item"
    data = write_jsonl(tmp_path / "more.jsonl", rows)
    output = audit(str(run.path), "--data", str(data), "--out", str(tmp_path / "out"), "--top", "9")
    assert "9 rows scored under the tuned and the base model" in output
    assert "[bold red]not markup[/] item" in output  # shown as text, not read as Rich markup
    assert f"tables: {tmp_path / 'out'}/rows.csv, rows.jsonl, audit.html" in single_line(output)
    for name in ("rows.csv", "rows.jsonl", "summary.json", "audit.html"):
        assert (tmp_path / "out" / name).is_file()


def test_json_prints_the_summary(run):
    summary = json.loads(audit(str(run.path), "--json"))
    assert summary["rows"] == 16 and [d["split"] for d in summary["data"]] == ["train", "validation"]
    assert summary["folder"] == str(run.path / "audit" / "training")
    assert set(summary["flags"]) == {"not_learned", "label_noise", "memorised"}


def test_drop_flagged_registers_a_version_without_the_flagged_lines(run, tmp_path):
    from tunery.data.registry import DatasetStore

    rows = chat_rows(10)
    rows.append(rows[2])  # line 11 repeats line 3: flagged memorised whatever the model learned
    data = write_jsonl(tmp_path / "repeats.jsonl", rows)
    output = audit(
        str(run.path), "--data", str(data), "--drop-flagged", "--name", "audit-cli-repeats", "--top", "0"
    )
    store = DatasetStore()
    original, cleaned = store.get("audit-cli-repeats", 1), store.get("audit-cli-repeats", 2)
    dropped = [item["line"] for item in cleaned.recipe["audit"]["dropped"]]
    assert 11 in dropped and 3 not in dropped and cleaned.parent == original.version == 1
    assert cleaned.rows == 11 - len(dropped)
    assert (
        f"audit-cli-repeats@2: {cleaned.rows} rows, audit-cli-repeats@1 without {len(dropped)} flagged lines"
        in output
    )


def test_bad_runs_and_files_end_in_one_line_and_exit_code_2(run, tmp_path):
    copy = shutil.copytree(run.path, tmp_path / "run")
    shutil.rmtree(copy / "adapter")
    refused = tunery_command("data", "audit", str(copy))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert single_line(refused.stderr).startswith(f"error: {copy} has no trained adapter (status: completed)")
