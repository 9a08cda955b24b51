"""A finished run in use: merge, chat and evaluate through the same commands a person types."""

from __future__ import annotations

import pytest
import torch

import tunery
from tests.cli.test_cli import tunery as tunery_cli
from tests.training.test_train import config_for


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    from tests.conftest import chat_rows, write_jsonl

    folder = tmp_path_factory.mktemp("use")
    files = (
        write_jsonl(folder / "train.jsonl", chat_rows(24)),
        write_jsonl(folder / "valid.jsonl", chat_rows(6)),
    )
    return tunery.train(config_for(tiny_model_dir, files, folder / "runs", max_steps=6), quiet=True)


def test_merged_model_gives_the_same_logits_as_base_plus_adapter(finished_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunery.inference import load_run_model

    out = tunery_cli("merge", str(finished_run.path), str(tmp_path / "merged"))
    assert out.returncode == 0, out.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    adapted, tokenizer = load_run_model(finished_run.path, device="cpu")
    ids = tokenizer("item 3 quantity 4", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        base = adapted.get_base_model()
        with adapted.disable_adapter():
            untuned = base(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(untuned, expected, atol=1e-5)  # the adapter did change something
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (tmp_path / "merged").iterdir()
    }


def test_merge_refuses_to_overwrite_a_folder_with_content(finished_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    out = tunery_cli("merge", str(finished_run.path), str(tmp_path / "taken"))
    assert out.returncode == 2
    assert "exists and is not empty; choose a new folder" in out.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_chat_prints_the_answer_the_model_was_tuned_to_give(tiny_model_dir, tmp_path):
    from tests.conftest import write_jsonl

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"item {i}"},
                {"role": "assistant", "content": "hello world"},
            ]
        }
        for i in range(8)
    ]
    files = (write_jsonl(tmp_path / "t.jsonl", rows), write_jsonl(tmp_path / "v.jsonl", rows[:2]))
    config = config_for(tiny_model_dir, files, tmp_path / "runs", max_steps=60)
    config["train"].update(lr=3e-2, batch_size=8)
    config["lora"].update(r=8, dropout=0.0)
    run = tunery.train(config, quiet=True)
    out = tunery_cli("chat", str(run.path), "--prompt", "item 3", "--max-new-tokens", "8")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello world"


def test_eval_compares_base_and_tuned_on_the_same_examples(finished_run):
    from tunery.evaluate import evaluate_run

    evaluation = evaluate_run(finished_run.path, with_base=True, max_new_tokens=4)
    assert evaluation.examples == 6
    assert evaluation.base is not None and evaluation.base.loss != evaluation.tuned.loss
    assert abs(evaluation.tuned.perplexity - torch.tensor(evaluation.tuned.loss).exp().item()) < 1e-3
    assert len(evaluation.samples) == 6 and evaluation.samples[0]["reference"].startswith('{"item"')
