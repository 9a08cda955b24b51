"""Task types beside SFT: classification (encoder and decoder) and seq2seq (T5), on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

import tunery
from tests.conftest import chat_rows, write_jsonl
from tunery.inference import generate, load_run_model

WORDS = {"good": ["good", "quick", "capital", "Paris"], "bad": ["lazy", "dog", "order", "item"]}


def labelled_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        label = "good" if i % 3 else "bad"  # imbalanced on purpose: 2 good for 1 bad
        words = WORDS[label]
        rows.append({"text": f"{words[i % 4]} {words[(i + 1) % 4]} {words[(i + 2) % 4]}", "label": label})
    return rows


def save_tiny(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory, tiny_tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=tiny_tokenizer.pad_token_id,
    )  # fmt: skip
    return save_tiny(BertModel(config), tiny_tokenizer, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory, tiny_tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tiny_tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
        pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
        decoder_start_token_id=tiny_tokenizer.pad_token_id,
    )  # fmt: skip
    return save_tiny(T5ForConditionalGeneration(config), tiny_tokenizer, tmp_path_factory.mktemp("tiny-t5"))


def task_config(model_dir, train, valid, out, **extra) -> dict:
    config = {
        "model": str(model_dir),
        "data": {"train": str(train), "validation": str(valid), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"batch_size": 8, "lr": 1e-2, "seed": 3, "warmup_ratio": 0.0, "max_steps": 4},
        "output_dir": str(out),
        "run_name": "run",
    }
    return config | extra


@pytest.fixture(scope="module")
def labelled_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    return write_jsonl(folder / "train.jsonl", labelled_rows(24)), write_jsonl(
        folder / "valid.jsonl", labelled_rows(9)
    )


@pytest.mark.parametrize("model_fixture", ["tiny_bert_dir", "tiny_model_dir"], ids=["encoder", "decoder"])
@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_classification_trains_the_head_reports_scores_and_reloads(
    model_fixture, method, labelled_files, tmp_path, request
):
    model_dir = request.getfixturevalue(model_fixture)
    config = task_config(
        model_dir, *labelled_files, tmp_path, task="classification", method=method,
        classification={"class_weights": "balanced"}, freeze={"top_layers": 1},
    )  # fmt: skip
    run = tunery.train(config, quiet=True)
    metrics = run.metrics
    assert math.isfinite(metrics["val_loss"])
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1

    model, tokenizer = load_run_model(run.path, device="cpu")
    assert model.config.id2label == {0: "bad", 1: "good"}
    head = [n for n, p in model.named_parameters() if "classifier" in n or "score" in n]
    assert head, "the classification head is part of the saved run"
    batch = tokenizer(["good quick Paris", "lazy dog item"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
        with model.disable_adapter():
            untrained = model(**batch).logits
    assert logits.shape == (2, 2)
    assert not torch.allclose(logits, untrained)  # the head trained (LoRA trains it too)


def test_classification_needs_two_labels(tiny_bert_dir, tmp_path):
    from tunery.data.prepare import DataError

    rows = [{"text": "good quick", "label": "good"}] * 4
    train = write_jsonl(tmp_path / "one.jsonl", rows)
    with pytest.raises(DataError, match="at least two labels"):
        tunery.train(task_config(tiny_bert_dir, train, train, tmp_path, task="classification"), quiet=True)


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_seq2seq_t5_trains_and_answers_through_tunery_chat(
    method, tiny_t5_dir, tmp_path, monkeypatch, capsys
):
    from tunery.cli import main

    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(16))
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(4))
    config = task_config(tiny_t5_dir, train, valid, tmp_path, task="seq2seq", method=method)
    run = tunery.train(config, quiet=True)
    losses = [row["loss"] for row in run.history() if "loss" in row]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)

    model, tokenizer = load_run_model(run.path, device="cpu")
    (answer,) = generate(
        model, tokenizer, [[{"role": "user", "content": "item 3 quantity 4"}]], max_new_tokens=8
    )
    assert isinstance(answer, str)
    monkeypatch.setattr(
        "sys.argv",
        ["tunery", "chat", str(run.path), "--prompt", "item 3 quantity 4", "--max-new-tokens", "8"],
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == answer
