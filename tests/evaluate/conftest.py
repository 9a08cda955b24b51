"""Tiny trained runs shared by the evaluation tests: trained once per session, evaluated once."""

from __future__ import annotations

import pytest

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.training.test_train import config_for


@pytest.fixture(scope="session")
def eval_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-data")
    return write_jsonl(folder / "train.jsonl", chat_rows(16)), write_jsonl(
        folder / "valid.jsonl", chat_rows(4)
    )


@pytest.fixture(scope="session")
def two_runs(tiny_model_dir, eval_files, tmp_path_factory):
    """Two runs that differ only in the LoRA rank."""
    out = tmp_path_factory.mktemp("runs")
    runs = []
    for name, rank in (("rank4", 4), ("rank8", 8)):
        config = config_for(tiny_model_dir, eval_files, out, max_steps=4, eval_every=2)
        config["lora"]["r"], config["run_name"] = rank, name
        runs.append(tunery.train(config, quiet=True))
    return runs


@pytest.fixture(scope="session")
def evaluated(two_runs):
    """(run, evaluation) of the first run on its validation file, with two format checks."""
    from tunery.evaluate import evaluate_run

    run = two_runs[0]
    return run, evaluate_run(run.path, checks=["json", "max_chars:40"], max_new_tokens=8)
