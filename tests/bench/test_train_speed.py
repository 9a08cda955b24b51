"""bench/train_speed.py counts each system's work from the batches it really built (the HFU numerator),
checked on the tiny llama: padded rows score every pair, packed rows under a mask the whole row's,
tunery's examples only their own causal pairs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import chat_rows, write_jsonl
from tunery.training.flops import StepSetup, Work, causal_pairs

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch, tiny_model_dir, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("train_speed", BENCH / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_speed", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "MODEL", str(tiny_model_dir))
    rows = chat_rows(8)
    write_jsonl(tmp_path / "train.jsonl", rows)
    common = module.COMMON | {"batch_size": 4}
    return module, tmp_path, rows, common


def test_the_naive_script_pays_for_512_padded_positions_per_row_and_every_pair(bench):
    module, workdir, rows, common = bench
    _, _, timing = module.train_naive("naive", workdir, rows, common)
    assert timing["work"] == Work(tokens=8 * 512, attention_pairs=8 * 512 * 512, head_positions=8 * 512)
    assert timing["setup"] == StepSetup(lora_rank=16)  # no checkpointing, embeddings frozen


def test_trl_fast_pays_for_one_masked_row_per_batch_and_its_head_on_every_position(bench):
    pytest.importorskip("trl", reason="TRL is in the bench extra: pip install -e '.[bench]'")
    module, workdir, rows, common = bench
    _, tokenizer, timing = module.train_trl("trl-fast", workdir, rows, common)
    work = timing["work"]
    assert work.attention_pairs >= work.tokens**2 // 2, (
        "two rows of S₁, S₂ tokens: S₁² + S₂² pairs, not Σ L²/2"
    )
    assert work.head_positions == work.tokens - 2, "every position but each row's last"
    assert timing["setup"] == StepSetup(lora_rank=16, recompute_head=True)


def test_tunery_pays_for_each_examples_causal_pairs_and_the_head_on_supervised_positions(bench):
    module, workdir, rows, common = bench
    _, tokenizer, timing = module.train_tunery("tunery", workdir, rows, common)
    examples = module._encoded(workdir / "train.jsonl", tokenizer, common)
    lengths = [len(e.input_ids) for e in examples]
    supervised = module.supervised_tokens(workdir / "train.jsonl", tokenizer, common)
    assert timing["work"] == Work(sum(lengths), sum(causal_pairs(n) for n in lengths), supervised)
    assert 0 < supervised < sum(lengths)


def test_the_profile_mode_says_where_a_steps_time_goes(bench, capsys):
    module, workdir, _, common = bench
    (workdir / "common.json").write_text(module.json.dumps(common))
    module.run_profile_child(module.argparse.Namespace(workdir=workdir, threads=1))
    report = capsys.readouterr().out
    shares = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1].endswith("%"):
            shares[cells[0]] = float(cells[1].rstrip("%"))
    assert set(shares) == set(module.OP_KINDS) | {module.REST}
    assert sum(shares.values()) == pytest.approx(100, abs=0.5)
    assert shares["matrix products"] > 0 and "| aten::mm |" in report
