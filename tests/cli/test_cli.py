"""The command line as a user meets it: bad input ends in one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl


def tunery(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("TUNERY_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "tunery", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def single_line(text: str) -> str:
    return " ".join(text.split())


GOOD_CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", "error: {path}: file is empty"),
        (
            "latin1.jsonl",
            json.dumps(GOOD_CHAT).encode() + b'\n{"text": "caf\xe9"}\n',
            "error: {path}:2: not UTF-8: byte 0xe9 at column 14 cannot be decoded (save the file as UTF-8)",
        ),
        (
            "broken.jsonl",
            json.dumps(GOOD_CHAT).encode() + b'\n{"messages": [}\n',
            "error: {path}:2: invalid JSON: Expecting value at column 15 (each line must be one JSON object)",
        ),
        (
            "mixed.jsonl",
            (json.dumps(GOOD_CHAT) + "\n" + json.dumps({"prompt": "a", "completion": "b"}) + "\n").encode(),
            "error: {path}:2: looks like 'completion' but earlier rows are 'chat' "
            "(use one format per file or set data.format)",
        ),
        (
            "fields.jsonl",
            b'{"question": "a", "id": 1}\n',
            "error: {path}: cannot tell the format from the fields: id, question (expected messages (chat), "
            "instruction + output (instruction), prompt + completion (completion), text + label (classification) "
            "or text (text); or set data.format)",
        ),
    ],
)
def test_a_bad_file_gets_one_clear_error_naming_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    result = tunery("data", "check", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert single_line(result.stderr) == message.format(path=path)


def test_rows_with_wrong_fields_are_listed_with_line_and_field_and_exit_1(tmp_path):
    rows = [
        GOOD_CHAT,
        {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": "not a list"},
    ]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    result = tunery("data", "check", str(path))
    assert result.returncode == 1
    out = single_line(result.stdout)
    assert (
        "line 2, field 'messages[0].role': unknown role 'bot'; expected one of: system, user, assistant"
        in out
    )
    assert "line 3, field 'messages': has no assistant turn, so there is nothing to learn" in out
    assert "line 4, field 'messages': must be a list of messages, got a string" in out


def test_training_on_a_file_with_bad_rows_refuses_before_loading_a_model(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD_CHAT, {"messages": [{"role": "user", "content": "q"}]}])
    result = tunery(
        "train",
        "--set",
        f"model={tiny_model_dir}",
        "--set",
        f"data.train={path}",
        "--set",
        f"output_dir={tmp_path}",
    )
    # No config file: the overrides alone make the config.
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        f"error: {path}: 1 row(s) cannot be used: line 2, field 'messages': has no assistant turn"
        in single_line(result.stderr)
    )


def test_a_mistyped_config_key_is_named_with_the_nearest_valid_one(tmp_path, chat_files):
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  train: {chat_files[0]}\ntrain:\n  epoch: 2\n", encoding="utf-8")
    result = tunery("train", str(config), "--set", "lora.alpah=4")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert single_line(result.stderr) == (
        "error: invalid config: unknown key 'lora.alpah'; did you mean 'lora.alpha'? "
        "unknown key 'train.epoch'; did you mean 'train.epochs'?"
    )


def test_an_unknown_model_says_how_to_point_at_a_local_copy(tmp_path, chat_files):
    result = tunery(
        "train",
        "--set",
        "model=./no/such/model",
        "--set",
        f"data.train={chat_files[0]}",
        "--set",
        f"output_dir={tmp_path}",
    )
    assert result.returncode == 2
    assert single_line(result.stderr) == "error: model path ./no/such/model does not exist"


def test_data_check_reports_token_lengths_with_a_model_tokenizer(tiny_model_dir, chat_files):
    result = tunery("data", "check", str(chat_files[0]), "--model", str(tiny_model_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 24 and report["ok"] is True
    assert report["total_tokens"]["min"] > 0
    assert report["supervised_tokens"]["max"] < report["total_tokens"]["max"]


def test_a_piped_training_prints_progress_lines_and_nothing_of_deepspeed(
    tiny_model_dir, chat_files, tmp_path
):
    import yaml

    from tests.training.test_train import config_for

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_for(tiny_model_dir, chat_files, tmp_path / "runs", max_steps=3)))
    result = tunery("train", str(config))
    assert result.returncode == 0, result.stderr
    assert "train step 3/3  loss " in result.stdout, result.stdout
    output = result.stdout + result.stderr
    assert "DeepSpeed" not in output and "real_accelerator" not in output, output
