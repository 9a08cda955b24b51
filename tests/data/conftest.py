"""Fixtures for the data tests: a dataset store in a temporary TUNERY_HOME, and row builders."""

from __future__ import annotations

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch):
    """TUNERY_HOME in tmp_path, so no test touches the real cache."""
    path = tmp_path / "home"
    monkeypatch.setenv("TUNERY_HOME", str(path))
    return path


@pytest.fixture
def store(home):
    from tunery.data.registry import DatasetStore

    return DatasetStore()


def qa(question: str, answer: str, **extra) -> dict:
    """One chat row: a user question and an assistant answer, plus any extra fields."""
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        **extra,
    }
