"""Writes the malformed-input corpus in tests/bad_inputs/corpus/ (the files are kept in git).

    .venv/bin/python tests/bad_inputs/make_corpus.py

Each file is one mistake people make with training data or configs; `test_bad_inputs.py`
says what tunery must answer to each. The 50 MB line is made at test time instead of
being kept (see `huge_line` there).
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"


def chat(user: str = "hi", assistant: str = "hello") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def lines(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


GOOD = [chat(f"question {i}", f"answer {i}") for i in range(3)]

TEXT_FILES: dict[str, str | bytes] = {
    # encoding and line endings
    "not_utf8.jsonl": lines(GOOD[0]).encode() + '{"text": "caf\xe9"}\n'.encode("latin-1"),
    "utf16.jsonl": lines(*GOOD).encode("utf-16"),
    "bom_then_bad_row.jsonl": codecs.BOM_UTF8 + lines(GOOD[0], GOOD[1], {"messages": "hi"}).encode(),
    "crlf_then_bad_row.jsonl": lines(GOOD[0], GOOD[1], {"messages": []}).replace("\n", "\r\n").encode(),
    "nul_bytes.jsonl": lines(GOOD[0]).encode() + b"\x00\x00\x00\n",
    # broken JSON
    "truncated_last_line.jsonl": lines(*GOOD) + '{"messages": [{"role": "user", "content": "cut',
    "pretty_printed.jsonl": json.dumps(GOOD, indent=2),
    "line_is_a_list.jsonl": lines(GOOD[0], "[1, 2, 3]"),
    "line_is_a_string.jsonl": lines(GOOD[0], '"just text"'),
    "trailing_comma.jsonl": lines(GOOD[0]) + '{"text": "a",}\n',
    "json_not_a_list.json": json.dumps({"rows": GOOD}),
    "json_record_not_object.json": json.dumps([GOOD[0], 42]),
    "json_syntax_error.json": json.dumps(GOOD)[:-5],
    # empty and degenerate files
    "empty.jsonl": "",
    "zero_rows.jsonl": "\n\n   \n",
    "zero_rows_header_only.csv": "text,label\n",
    "duplicate_only.jsonl": lines(*[GOOD[0]] * 6),
    "no_known_fields.jsonl": lines({"question": "a", "answer": "b"}, {"question": "c", "answer": "d"}),
    "unsupported_extension.txt": "question: a\nanswer: b\n",
    # schemas and types
    "mixed_schemas.jsonl": lines(GOOD[0], {"instruction": "add", "output": "2"}),
    "content_wrong_type.jsonl": lines(GOOD[0], chat("hi", 42)),
    "messages_wrong_type.jsonl": lines(GOOD[0], {"messages": "hello"}),
    "message_not_object.jsonl": lines(GOOD[0], {"messages": ["hello", "world"]}),
    "empty_messages.jsonl": lines(GOOD[0], {"messages": []}),
    "empty_content.jsonl": lines(GOOD[0], chat("hi", "")),
    "null_content.jsonl": lines(GOOD[0], chat(None, "x")),
    "unknown_role.jsonl": lines(
        GOOD[0], {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    ),
    "no_assistant_turn.jsonl": lines(GOOD[0], {"messages": [{"role": "user", "content": "hi"}]}),
    "system_not_first.jsonl": lines(
        GOOD[0],
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "be brief"},
                {"role": "assistant", "content": "yo"},
            ]
        },
    ),
    "instruction_output_null.jsonl": lines(
        {"instruction": "add", "output": "2"}, {"instruction": "x", "output": None}
    ),
    "completion_missing.jsonl": lines({"prompt": "a", "completion": "b"}, {"prompt": "c"}),
    "text_empty.jsonl": lines({"text": "a"}, {"text": "   "}),
    "label_is_a_list.jsonl": lines({"text": "good", "label": "pos"}, {"text": "bad", "label": ["neg"]}),
    "sharegpt_unknown_from.jsonl": lines(
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"conversations": [{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
    ),
    # CSV
    "csv_quoted_newlines_then_bad_row.csv": 'text,label\n"first\nline",pos\n"second\n\nline",neg\nthird,pos,extra\n',
    "csv_unclosed_quote.csv": 'text,label\ngood,pos\n"never closed,neg\n',
    "csv_empty_label.csv": "text,label\ngood,pos\nbad,\n",
    # configs
    "config_empty.yaml": "",
    "config_not_a_mapping.yaml": "- model\n- data\n",
    "config_invalid_yaml.yaml": "model: tiny\ndata:\n  train: [a.jsonl\n",
    "config_unknown_key.yaml": "data:\n  train: train.jsonl\ntrain:\n  learning_rate: 0.001\n",
    "config_unknown_section.yaml": "data:\n  train: train.jsonl\ntrainer:\n  epochs: 1\n",
    "config_negative_lr.yaml": "data:\n  train: train.jsonl\ntrain:\n  lr: -0.001\n",
    "config_zero_batch_size.yaml": "data:\n  train: train.jsonl\ntrain:\n  batch_size: 0\n",
    "config_dropout_too_high.yaml": "data:\n  train: train.jsonl\nlora:\n  dropout: 1.5\n",
    "config_warmup_ratio_one.yaml": "data:\n  train: train.jsonl\ntrain:\n  warmup_ratio: 1.0\n",
    "config_max_length_tiny.yaml": "data:\n  train: train.jsonl\n  max_length: 2\n",
    "config_epochs_string.yaml": "data:\n  train: train.jsonl\ntrain:\n  epochs: many\n",
    "config_unknown_method.yaml": "data:\n  train: train.jsonl\nmethod: lorax\n",
    "config_missing_data.yaml": "model: smollm2-135m-instruct\n",
    "config_train_file_missing.yaml": "model: MODEL\ndata:\n  train: no_such_file.jsonl\n",
    "config_validation_labels_unseen.yaml": (
        "model: MODEL\ntask: classification\ndata:\n  train: labels_train.jsonl\n  validation: labels_valid.jsonl\n"
    ),
    "config_single_label.yaml": "model: MODEL\ntask: classification\ndata:\n  train: labels_one.jsonl\n",
    # data the configs above point at
    "labels_train.jsonl": lines({"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}),
    "labels_valid.jsonl": lines({"text": "fine", "label": "pos"}, {"text": "meh", "label": "neutral"}),
    "labels_one.jsonl": lines({"text": "good", "label": "pos"}, {"text": "great", "label": "pos"}),
}


def write_parquet_files() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = [[{"role": "user", "content": {"text": "hi"}}, {"role": "assistant", "content": {"text": "yo"}}]]
    pq.write_table(pa.table({"messages": nested * 2}), CORPUS / "nested_columns.parquet")
    pq.write_table(pa.table({"text": [{"a": 1}, {"a": 2}], "label": [1, 2]}), CORPUS / "struct_text.parquet")
    (CORPUS / "not_really.parquet").write_bytes(b"PAR1 this is not parquet")


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, content in TEXT_FILES.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (CORPUS / name).write_bytes(data)
    write_parquet_files()
    print(f"wrote {len(list(CORPUS.iterdir()))} files to {CORPUS}")


if __name__ == "__main__":
    main()
