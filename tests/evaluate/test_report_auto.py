"""`tunery report` shows the auto choices and a plot of the learning-rate range test."""

from __future__ import annotations

import tunery
from tests.conftest import chat_rows, write_jsonl


def test_the_report_has_the_auto_choices_and_the_range_test_plot(tiny_model_dir, tmp_path):
    from tunery.evaluate.report import render_report

    train, valid = (
        write_jsonl(tmp_path / "train.jsonl", chat_rows(24)),
        write_jsonl(tmp_path / "v.jsonl", chat_rows(6)),
    )
    config = {
        "model": str(tiny_model_dir), "data": {"train": str(train), "validation": str(valid), "max_length": 64},
        "lora": {"r": 4}, "train": {"max_steps": 20, "batch_size": 8, "threads": 1},
        "output_dir": str(tmp_path / "runs"), "run_name": "auto",
    }  # fmt: skip
    run = tunery.train(config, quiet=True)
    html = render_report(run)
    assert "<h2>Automatic choices</h2>" in html and "<th>train.lr</th>" in html
    assert 'alt="learning-rate range test" src="data:image/png;base64,' in html
    config["train"]["lr"] = 1e-3
    plain = tunery.train({**config, "run_name": "plain"}, quiet=True)
    assert 'alt="learning-rate range test"' not in render_report(plain)  # no test ran: no plot
