"""One short demo fine-tune of SmolLM2 shared by the slow tests that only read a tuned run."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunery

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """24 steps of examples/demo.yaml: enough for the tuned model to answer the demo prompts right."""
    out = tmp_path_factory.mktemp("demo-run")
    return tunery.train(
        EXAMPLES / "demo.yaml",
        overrides=[
            "train.max_steps=24", "train.batch_size=8", "train.warmup_ratio=0", "train.eval_every=24",
            "train.save_every=24", f"output_dir={out}", "run_name=demo",
        ],
        quiet=True,
    )  # fmt: skip
