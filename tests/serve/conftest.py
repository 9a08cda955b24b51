"""Two tiny LoRA runs on the tiny llama, trained once per session (a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chat_rows, write_jsonl


def train_tiny_run(model_dir: Path, out: Path, name: str, seed: int) -> Path:
    import tunery

    data = write_jsonl(out / f"{name}.jsonl", chat_rows(16))
    config = {
        "model": str(model_dir),
        "data": {"train": str(data), "max_length": 64, "validation_split": 0.0},
        "lora": {"r": 4, "alpha": 16, "dropout": 0.0},
        "train": {
            "batch_size": 4,
            "lr": 5e-2,
            "seed": seed,
            "warmup_ratio": 0.0,
            "max_steps": 4,
            "threads": 1,
            # Fixed adapters for the serving tests: at lr 5e-2 the tiny adapters are large, and
            # the bf16 rounding of stored adapters (docs/serving.md) is calibrated on these.
            "batching": "grouped",
        },
        "output_dir": str(out),
        "run_name": name,
    }
    return tunery.train(config, quiet=True).path


@pytest.fixture(scope="session")
def two_runs(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("serve-runs")
    return train_tiny_run(tiny_model_dir, out, "alpha", seed=1), train_tiny_run(
        tiny_model_dir, out, "beta", seed=2
    )
