"""Fixtures shared by the fault tests: the training file the tiny-model jobs learn from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chat_rows, write_jsonl


@pytest.fixture(scope="session")
def train_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "orders.jsonl", chat_rows(24))
