"""Preference files: every accepted shape, per-line errors naming the field, and the check report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.tasks.preference_rows import pair_rows
from tunery.data.preference import load_preferences
from tunery.data.preference_check import check_preferences
from tunery.data.types import DataFileError


@pytest.mark.parametrize("shape", ["prompt", "messages", "openai"])
def test_every_paired_shape_reads_to_the_same_pairs(shape, tmp_path):
    loaded = load_preferences(write_jsonl(tmp_path / "p.jsonl", pair_rows(3, shape)))
    assert loaded.format == "paired" and not loaded.errors
    example = loaded.examples[1]
    assert example.chosen == '{"item": 1, "quantity": 1}' and example.rejected == '{"item": 4, "quantity": 3}'
    assert example.kind == ("completion" if shape == "prompt" else "chat")


def test_unpaired_rows_read_with_their_labels_and_csv_strings_count_as_booleans(tmp_path):
    loaded = load_preferences(write_jsonl(tmp_path / "k.jsonl", pair_rows(2, "unpaired")))
    assert loaded.format == "unpaired" and [e.desirable for e in loaded.examples] == [
        True,
        False,
        True,
        False,
    ]
    csv = tmp_path / "k.csv"
    csv.write_text("prompt,completion,label\nhi,hello,true\nhi,go away,FALSE\n", encoding="utf-8")
    assert [e.desirable for e in load_preferences(csv).examples] == [True, False]


HOSTILE = [
    ({"prompt": "q", "chosen": "a"}, "rejected", "required field is missing"),
    ({"prompt": "q", "chosen": "same", "rejected": " same "}, "rejected", "is the same as chosen"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "prompt", "is empty"),
    ({"prompt": [], "chosen": "a", "rejected": "b"}, "prompt", "is empty"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "chosen", "must be a string"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, "chosen[0].role", "must be 'assistant'"),
    ({"prompt": "q", "chosen": [], "rejected": "b"}, "chosen", "exactly one assistant message"),
    ({"input": {}, "preferred_output": [{"role": "assistant", "content": "a"}],
      "non_preferred_output": [{"role": "assistant", "content": "b"}]}, "input.messages", "missing"),
    ({"input": "q", "preferred_output": "a", "non_preferred_output": "b"}, "input", "must be an object"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
      "chosen": "a", "rejected": "b"}, "messages[1]", "ends with an assistant turn"),
    ({"messages": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"}, "messages[0].role", "unknown role"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "field", "reason"), HOSTILE)
def test_a_bad_row_is_an_error_naming_its_line_and_field(row, field, reason, tmp_path):
    loaded = load_preferences(write_jsonl(tmp_path / "p.jsonl", [*pair_rows(2), row]))
    (error,) = loaded.errors
    assert (error.line, error.field) == (3, field) and reason in error.reason
    assert len(loaded.examples) == 2


def test_mixed_shapes_and_files_without_preferences_are_refused(tmp_path):
    with pytest.raises(DataFileError, match="mixes paired"):
        load_preferences(write_jsonl(tmp_path / "m.jsonl", [*pair_rows(1), *pair_rows(1, "unpaired")]))
    with pytest.raises(DataFileError, match="no preference rows"):
        load_preferences(write_jsonl(tmp_path / "n.jsonl", [{"text": "hello"}]))


def test_sft_loading_points_a_preference_file_to_task_preference(tmp_path):
    from tunery.data import load_examples

    with pytest.raises(DataFileError, match="task: preference"):
        load_examples(write_jsonl(tmp_path / "p.jsonl", pair_rows(2)))


def test_the_check_reports_lengths_truncation_duplicates_and_the_length_bias(tiny_tokenizer, tmp_path):
    rows = [
        {"prompt": f"q{i}", "chosen": "a much longer and better answer " * 2, "rejected": "short"}
        for i in range(4)
    ]
    rows += [rows[0], {"prompt": "word " * 80, "chosen": "a", "rejected": "b"}]
    report = check_preferences(load_preferences(write_jsonl(tmp_path / "p.jsonl", rows)), tiny_tokenizer, 40)
    assert report.exact_duplicates == [[1, 5]]
    assert (
        report.prompt_tokens.max > 40 and report.chosen_tokens.min >= 1 and report.rejected_tokens is not None
    )
    assert [(e.line, e.field) for e in report.errors] == [(6, "chosen"), (6, "rejected")]
    assert "max_length (40)" in report.errors[0].reason and not report.ok
    assert report.chosen_longer_share == pytest.approx(5 / 6, abs=1e-3) and report.length_unit == "tokens"
    assert any("longer one" in w.reason for w in report.warnings)


def test_tunery_data_check_on_a_preference_file_exits_1_with_the_line(tmp_path, monkeypatch, capsys):
    from tunery.cli import main

    path = write_jsonl(tmp_path / "p.jsonl", [*pair_rows(3), {"prompt": "q", "chosen": "a"}])
    monkeypatch.setattr("sys.argv", ["tunery", "data", "check", str(path), "--json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    report = json.loads(capsys.readouterr().out)
    assert exit_.value.code == 1 and report["format"] == "paired" and report["valid_rows"] == 3
    assert report["errors"][0]["line"] == 4 and report["errors"][0]["field"] == "rejected"
