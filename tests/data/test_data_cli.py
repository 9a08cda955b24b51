"""`tunery data add/list/show/diff/report/split/mix/augment` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_jsonl
from tests.data.conftest import qa
from tests.data.test_versions import V1, V2
from tunery.cli import app

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"


@pytest.fixture
def tunery(home):
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["data", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    return run


def test_add_prints_the_version_and_what_changed(tunery, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", V1)
    assert tunery("add", "orders", str(file)).startswith("orders@1: 4 rows, chat, sha256 ")
    write_jsonl(file, V2)
    assert "against orders@1: 2 added, 1 removed, 1 changed, 2 unchanged" in tunery(
        "add", "orders", str(file)
    )
    assert tunery("add", "orders", str(file)) == "orders@2: unchanged (same content as the latest version)\n"


def test_list_show_and_diff_describe_the_versions(tunery, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", V1)
    tunery("add", "orders", str(file))
    write_jsonl(file, V2)
    tunery("add", "orders", str(file))
    listed = json.loads(tunery("list", "--json"))
    assert [(v["name"], v["version"], v["rows"]) for v in listed] == [("orders", 2, 5)]
    shown = json.loads(tunery("show", "orders@2", "--json"))[0]
    assert shown["parent"] == 1 and shown["changes"]["changed"] == 1
    assert tunery("show", "orders").count("orders@") == 2
    diff = tunery("diff", "orders", "1", "2")
    assert diff.splitlines()[0] == "orders@1 -> orders@2: 2 added, 1 removed, 1 changed, 2 unchanged"
    assert "changed (old->new): 2->3" in diff


def test_report_on_the_example_data_prints_the_report(tunery):
    output = tunery("report", str(EXAMPLES / "train.jsonl"), "--against", str(EXAMPLES / "valid.jsonl"))
    assert "Quality report:" in output and "languages: en 320 (100%)" in output


def test_report_lists_findings_with_severity_and_lines(tunery, tmp_path):
    rows = [qa("What is 2+2?", "4"), qa("What is 2+2?", "5"), qa("email me: bo@example.com", "N/A")]
    output = tunery("report", str(write_jsonl(tmp_path / "t.jsonl", rows)))
    assert "[high] same prompt, different answers (2)" in output
    assert "lines: 1, 2" in output
    assert "[medium] email addresses (1)" in output


def test_split_writes_files_and_mix_registers_a_version_with_its_recipe(tunery, tmp_path):
    data = write_jsonl(
        tmp_path / "all.jsonl", [qa(f"q{i}", f"a{i}", label="x" if i % 3 else "y") for i in range(30)]
    )
    output = tunery(
        "split", str(data), "--out", str(tmp_path / "out"), "--test", "0.2", "--stratify", "label"
    )
    # 20 'x' and 10 'y' rows: 2 + 1 to validation, 4 + 2 to test, the rest to train
    assert "train: 21 rows" in output and "validation: 3 rows" in output and "test: 6 rows" in output
    tunery("add", "general", str(tmp_path / "out" / "train.jsonl"))
    mixed = tunery("mix", "blend", "general@1=0.5", f"{tmp_path / 'out' / 'test.jsonl'}=0.5", "--total", "10")
    assert mixed.startswith("blend@1: 10 rows (general@1 5, ")
    recipe = json.loads(tunery("show", "blend@1", "--json"))[0]["recipe"]
    assert [s["count"] for s in recipe["sources"]] == [5, 5]


def test_augment_writes_rows_and_a_table_per_strategy(tunery, tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", [qa("please send the big box quickly", "ok")])
    output = tunery("augment", str(data), "--out", str(tmp_path / "aug.jsonl"), "--strategy", "synonym")
    assert "synonym" in output
    rows = [json.loads(line) for line in (tmp_path / "aug.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[1]["augmentation"]["strategy"] == "synonym"
