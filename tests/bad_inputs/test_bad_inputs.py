"""The malformed-input corpus: every file in corpus/ gets a clear answer naming where and what, never a traceback.

Data files go through `tunery data check` and through an upload to the server (`POST /v1/files`);
configs through `tunery train`. A case expects an error (exit 1: rows with errors, exit 2: the
file or config can't be used at all; 400 from the server) or, where the data can still train,
a warning. `where` and `what` must both appear in what the user sees.

The corpus is written by make_corpus.py; the 50 MB line is made here, at test time.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"
ERRORS, UNUSABLE, WARNS = 1, 2, 0  # exit codes of the CLI


@dataclass(frozen=True)
class Case:
    file: str
    exit: int  # ERRORS, UNUSABLE or WARNS
    where: str  # file:line, "line N, field 'x'", or the config key
    what: str


DATA_CASES = [
    Case("not_utf8.jsonl", UNUSABLE, "not_utf8.jsonl:2", "not UTF-8: byte 0xe9 at column 14"),
    Case("utf16.jsonl", UNUSABLE, "utf16.jsonl:1", "save the file as UTF-8"),
    Case("bom_then_bad_row.jsonl", ERRORS, "line 3, field 'messages'", "must be a list of messages"),
    Case("crlf_then_bad_row.jsonl", ERRORS, "line 3, field 'messages'", "required field is empty"),
    Case("nul_bytes.jsonl", UNUSABLE, "nul_bytes.jsonl:2", "invalid JSON"),
    Case("truncated_last_line.jsonl", UNUSABLE, "truncated_last_line.jsonl:4", "Unterminated string"),
    Case("pretty_printed.jsonl", UNUSABLE, "pretty_printed.jsonl:1", "looks like one JSON list"),
    Case("line_is_a_list.jsonl", UNUSABLE, "line_is_a_list.jsonl:2", "expected a JSON object, got a list"),
    Case("line_is_a_string.jsonl", UNUSABLE, "line_is_a_string.jsonl:2", "got a string"),
    Case("trailing_comma.jsonl", UNUSABLE, "trailing_comma.jsonl:2", "invalid JSON"),
    Case("json_not_a_list.json", UNUSABLE, "json_not_a_list.json", "expected a list of records"),
    Case("json_record_not_object.json", UNUSABLE, "record 2", "expected a JSON object, got an integer"),
    Case("json_syntax_error.json", UNUSABLE, "json_syntax_error.json:1", "invalid JSON"),
    Case("empty.jsonl", UNUSABLE, "empty.jsonl", "file is empty"),
    Case("zero_rows.jsonl", UNUSABLE, "zero_rows.jsonl", "file is empty"),
    Case("zero_rows_header_only.csv", UNUSABLE, "zero_rows_header_only.csv", "file has no rows"),
    Case("duplicate_only.jsonl", WARNS, "line 1", "every row repeats another: 6 rows hold only 1"),
    Case("no_known_fields.jsonl", UNUSABLE, "no_known_fields.jsonl", "cannot tell the format"),
    Case("unsupported_extension.txt", UNUSABLE, "unsupported_extension.txt", "unsupported file type '.txt'"),
    Case("mixed_schemas.jsonl", UNUSABLE, "mixed_schemas.jsonl:2", "looks like 'instruction' but earlier"),
    Case(
        "content_wrong_type.jsonl",
        ERRORS,
        "line 2, field 'messages[1].content'",
        "must be a string, got an integer",
    ),
    Case("messages_wrong_type.jsonl", ERRORS, "line 2, field 'messages'", "got a string"),
    Case("message_not_object.jsonl", ERRORS, "line 2, field 'messages[0]'", "must be an object"),
    Case("empty_messages.jsonl", ERRORS, "line 2, field 'messages'", "required field is empty"),
    Case("empty_content.jsonl", ERRORS, "line 2, field 'messages[1].content'", "required field is empty"),
    Case("null_content.jsonl", ERRORS, "line 2, field 'messages[0].content'", "null"),
    Case("unknown_role.jsonl", ERRORS, "line 2, field 'messages[0].role'", "unknown role 'bot'"),
    Case("no_assistant_turn.jsonl", ERRORS, "line 2, field 'messages'", "no assistant turn"),
    Case("system_not_first.jsonl", ERRORS, "line 2, field 'messages[1].role'", "may only come first"),
    Case("instruction_output_null.jsonl", ERRORS, "line 2, field 'output'", "required field is null"),
    Case("completion_missing.jsonl", ERRORS, "line 2, field 'completion'", "required field is missing"),
    Case("text_empty.jsonl", WARNS, "line 2, field 'text'", "is only whitespace"),
    Case("label_is_a_list.jsonl", ERRORS, "line 2, field 'label'", "must be a string or an integer"),
    Case("sharegpt_unknown_from.jsonl", ERRORS, "line 2, field 'conversations[0]", "robot"),
    Case(
        "csv_quoted_newlines_then_bad_row.csv", UNUSABLE, "csv_quoted_newlines_then_bad_row.csv:7", "3 fields"
    ),
    Case("csv_unclosed_quote.csv", UNUSABLE, "csv_unclosed_quote.csv:3", "a quote opened here is still open"),
    Case("csv_empty_label.csv", ERRORS, "line 3, field 'label'", "required field is empty"),
    Case(
        "nested_columns.parquet",
        ERRORS,
        "row 1, field 'messages[0].content'",
        "must be a string, got an object",
    ),
    Case("struct_text.parquet", ERRORS, "row 1, field 'text'", "must be a string, got an object"),
    Case("not_really.parquet", UNUSABLE, "not_really.parquet", "cannot read Parquet"),
    Case("huge_line.jsonl", WARNS, "line 1", "52,428,8"),  # made by `huge_line`
]

CONFIG_CASES = [
    Case("config_empty.yaml", UNUSABLE, "config_empty.yaml", "must be a mapping"),
    Case("config_not_a_mapping.yaml", UNUSABLE, "config_not_a_mapping.yaml", "must be a mapping"),
    Case("config_invalid_yaml.yaml", UNUSABLE, "config_invalid_yaml.yaml", "not valid YAML"),
    Case("config_unknown_key.yaml", UNUSABLE, "'train.learning_rate'", "did you mean 'train.lr'?"),
    Case("config_unknown_section.yaml", UNUSABLE, "'trainer'", "did you mean 'train'?"),
    Case("config_negative_lr.yaml", UNUSABLE, "'train.lr'", "greater than 0 (got -0.001)"),
    Case("config_zero_batch_size.yaml", UNUSABLE, "'train.batch_size'", "greater than or equal to 1 (got 0)"),
    Case("config_dropout_too_high.yaml", UNUSABLE, "'lora.dropout'", "less than 1 (got 1.5)"),
    Case("config_warmup_ratio_one.yaml", UNUSABLE, "'train.warmup_ratio'", "less than 1 (got 1.0)"),
    Case("config_max_length_tiny.yaml", UNUSABLE, "'data.max_length'", "(got 2)"),
    Case("config_epochs_string.yaml", UNUSABLE, "'train.epochs'", "(got 'many')"),
    Case("config_unknown_method.yaml", UNUSABLE, "'method'", "(got 'lorax')"),
    Case("config_missing_data.yaml", UNUSABLE, "missing key 'data'", "invalid config"),
    Case("config_train_file_missing.yaml", UNUSABLE, "no_such_file.jsonl", "no such file"),
    Case("config_validation_labels_unseen.yaml", UNUSABLE, "validation labels ['neutral']", "never occur"),
    Case("config_single_label.yaml", UNUSABLE, "labels_one.jsonl", "at least two labels"),
]


def test_the_corpus_holds_at_least_40_malformed_inputs_and_every_file_has_a_case():
    cases = {case.file for case in DATA_CASES + CONFIG_CASES}
    helpers = {path.name for path in CORPUS.glob("labels_*.jsonl")}  # the data the label configs use
    assert len(cases) >= 40
    assert {path.name for path in CORPUS.iterdir()} - helpers == cases - {"huge_line.jsonl"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir) -> Path:
    """The corpus copied aside, the configs pointed at the tiny model, plus a 50 MB line."""
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS, folder, dirs_exist_ok=True)
    for config in folder.glob("config_*.yaml"):
        config.write_text(config.read_text().replace("MODEL", str(tiny_model_dir)))
    huge_line(folder / "huge_line.jsonl")
    return folder


def huge_line(path: Path) -> None:
    messages = [{"role": "user", "content": "x" * (50 * 1024 * 1024)}, {"role": "assistant", "content": "ok"}]
    path.write_text(json.dumps({"messages": messages}) + "\n")


def run_cli(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """`tunery ARGS` in this process: (exit code, everything printed with whitespace collapsed)."""
    from tunery.cli import main

    monkeypatch.setattr(sys, "argv", ["tunery", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return ended.value.code or 0, " ".join((out + err).split())


def assert_clear(case: Case, code: int, shown: str) -> None:
    assert "Traceback" not in shown, shown
    assert code == case.exit, shown
    assert case.where in shown and case.what in shown, shown


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.file)
def test_data_check_names_where_and_what(case, corpus, capsys, monkeypatch):
    monkeypatch.chdir(corpus)
    code, shown = run_cli(["data", "check", case.file], capsys, monkeypatch)
    assert_clear(case, code, shown)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.file)
def test_train_refuses_a_bad_config_naming_the_key(case, corpus, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing may be trained: no run folder appears
    code, shown = run_cli(["train", str(corpus / case.file), "--quiet"], capsys, monkeypatch)
    assert_clear(case, code, shown)
    assert not list(tmp_path.glob("runs/*/adapter"))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The service in this process, with a key of project `team-a` sent on every request."""
    from tests.security.conftest import in_process_service

    with in_process_service(tmp_path_factory.mktemp("service")) as (client, key_of):
        client.headers.update(key_of("team-a"))
        yield client


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.file)
def test_an_upload_is_refused_or_warned_about_naming_where_and_what(case, corpus, api):
    with (corpus / case.file).open("rb") as handle:
        answer = api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (case.file, handle)})
    body = answer.json()
    if case.exit == UNUSABLE:  # the file can't be read: one message naming file and line
        assert answer.status_code == 400 and body["error"]["code"] == "invalid_file", body
        assert case.where in body["error"]["message"] and case.what in body["error"]["message"], body
        return
    if case.exit == ERRORS:  # nothing stored; the checker's report says which rows and fields
        assert answer.status_code == 400 and body["error"]["code"] == "invalid_file", body
        found = body["error"]["report"]["errors"]
    else:  # stored, with the warning in its report
        assert answer.status_code == 200, body
        found = api.get(f"/api/files/{body['id']}/report").json()["report"]["warnings"]
    line, field = re.search(r"(?:line|row|record) (\d+)(?:, field '([^']+)')?", case.where).groups()
    assert any(
        problem["line"] == int(line)
        and (field is None or (problem["field"] or "").startswith(field))
        and case.what in f"{problem['field']} {problem['reason']}"
        for problem in found
    ), found
