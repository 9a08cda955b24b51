"""A finished tiny LoRA run, shared by the export tests (training it takes a few seconds)."""

from __future__ import annotations

import pytest

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.training.test_train import config_for


@pytest.fixture(scope="session")
def finished_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-run")
    files = (
        write_jsonl(folder / "train.jsonl", chat_rows(24)),
        write_jsonl(folder / "valid.jsonl", chat_rows(6)),
    )
    return tunery.train(config_for(tiny_model_dir, files, folder / "runs", max_steps=6), quiet=True)
