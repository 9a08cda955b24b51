"""The real SmolLM2-135M-Instruct: SFT, then DPO from it on right-vs-corrupted JSON answers.

The chain a practitioner runs (examples/make_preference_pairs.py builds the pairs from
examples/data): a short SFT run teaches the format, a DPO run started from it
(`preference.init_from`) must then prefer the right answer on held-out pairs (implicit
reward accuracy against the SFT model >= 0.9) without losing exact match on the SFT
validation set. Sizes are cut to stay within a few minutes on 2 loaded cores.

The learning rate matters: at 5e-4 the same 16 steps reached 0.95 reward accuracy but
pushed the chosen answers' log-prob down too (-1.0 to -12.7 on average, DPO's known
failure) and exact match fell from 0.75 to 0.0; this test is what caught it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tunery

EXAMPLES = Path(__file__).parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

from make_preference_pairs import make_pairs, read_chats, write_pairs  # noqa: E402

STEPS, BATCH, MAX_LENGTH = 16, 4, 128


def sft_run(tmp_path: Path):
    return tunery.train(
        EXAMPLES / "demo.yaml",
        overrides=[
            f"train.max_steps={STEPS}", f"train.batch_size={BATCH}", "train.warmup_ratio=0",
            f"train.eval_every={STEPS}", f"train.save_every={STEPS}", f"data.max_length={MAX_LENGTH}",
            f"output_dir={tmp_path}", "run_name=sft",
        ],
        quiet=True,
    )  # fmt: skip


def dpo_run(tmp_path: Path, sft, train_pairs: Path, valid_pairs: Path):
    return tunery.train(
        {
            "model": "smollm2-135m-instruct", "task": "preference",
            "preference": {"loss": "dpo", "beta": 0.1, "init_from": str(sft.path)},
            "data": {"train": str(train_pairs), "validation": str(valid_pairs), "max_length": MAX_LENGTH},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "train": {"max_steps": STEPS, "batch_size": BATCH, "lr": 1e-4, "warmup_ratio": 0.0,
                      "eval_every": STEPS, "save_every": STEPS, "seed": 42},
            "output_dir": str(tmp_path), "run_name": "dpo",
        },
        quiet=True,
    )  # fmt: skip


@pytest.mark.slow
def test_dpo_after_sft_prefers_the_right_answer_and_keeps_exact_match(tmp_path):
    from tunery.evaluate import evaluate_run

    train_pairs = write_pairs(
        tmp_path / "pairs-train.jsonl", make_pairs(read_chats(EXAMPLES / "data/train.jsonl")[:64])
    )
    valid_pairs = write_pairs(
        tmp_path / "pairs-valid.jsonl", make_pairs(read_chats(EXAMPLES / "data/valid.jsonl"), 1)
    )
    sft = sft_run(tmp_path)
    dpo = dpo_run(tmp_path, sft, train_pairs, valid_pairs)
    assert dpo.record["parent"]["name"] == "sft"

    pairs = evaluate_run(dpo.path, valid_pairs)  # base = the SFT model DPO started from
    assert isinstance(pairs, dict) and pairs["examples"] == 40
    print("held-out pairs:", {"base": pairs["base"], "tuned": pairs["tuned"]})
    assert pairs["tuned"]["reward_accuracy"] >= 0.9
    assert pairs["tuned"]["win_rate"] >= pairs["base"]["win_rate"]
    assert pairs["tuned"]["logp_margin"] > pairs["base"]["logp_margin"]

    answers = evaluate_run(dpo.path, EXAMPLES / "data/valid.jsonl", limit=12, max_new_tokens=40)
    assert not isinstance(answers, dict) and answers.base is not None
    print("exact match on valid.jsonl[:12]: sft", answers.base.exact_match, "dpo", answers.tuned.exact_match)
    assert answers.base.exact_match is not None and answers.tuned.exact_match is not None
    assert answers.tuned.exact_match >= answers.base.exact_match
