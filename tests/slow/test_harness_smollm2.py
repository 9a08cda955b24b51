"""lm-eval on a real SmolLM2 run, offline: a local generate-until task built from the demo's held-out orders.

The requests go through the model's chat template with the demo's system turn (`--harness-chat`),
as the tuned model is used; the base model answers in prose, the tuned one in the demo's JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunery.cli import app

EXAMPLES = Path(__file__).parents[2] / "examples"
SYSTEM = "Extract the order as compact JSON."
TASK = """task: demo_orders_json
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{request}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["<|im_end|>", "\\n"]
  max_gen_toks: 40
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("harness-demo")
    chats = [json.loads(line) for line in (EXAMPLES / "data" / "valid.jsonl").read_text().splitlines()[:12]]
    rows = [{"request": c["messages"][1]["content"], "answer": c["messages"][2]["content"]} for c in chats]
    data = folder / "orders.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (folder / "demo_orders_json.yaml").write_text(TASK.format(data=data), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_the_harness_sees_the_tuned_model_answer_the_held_out_orders_and_the_base_not(demo_run, task_dir):
    result = CliRunner().invoke(
        app,
        [
            "eval", str(demo_run.path), "--harness", "demo_orders_json", "--harness-include", str(task_dir),
            "--harness-chat", "--system", SYSTEM,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((demo_run.path / "eval" / "harness" / "metrics.json").read_text())
    tuned, base = (
        summary["tuned"]["demo_orders_json/exact_match"],
        summary["base"]["demo_orders_json/exact_match"],
    )
    print(f"harness exact match on 12 held-out orders: base {base:.3f} -> tuned {tuned:.3f}")
    assert tuned >= 0.75 and base <= 0.1
    assert summary["harness"]["chat_template"] is True
    record = json.loads((demo_run.path / "run.json").read_text())
    assert record["metrics"]["harness"]["tuned"]["demo_orders_json/exact_match"] == tuned
    assert (demo_run.path / "eval" / "harness" / "tuned_results.json").exists()
