"""Preference tuning on the tiny llama: packing, the reference cache, resume, the chain from SFT, refusals."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.tasks.preference_rows import pair_rows
from tests.training.test_train import kill_after_checkpoint
from tunery.config import load_config
from tunery.data.preference import load_preferences
from tunery.data.preference_tokens import encode_preferences


def pref_config(model_dir, train, valid, out, loss="dpo", **train_extra) -> dict:
    return {
        "model": str(model_dir), "task": "preference", "preference": {"loss": loss, "beta": 0.5},
        "data": {"train": str(train), "validation": str(valid), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"batch_size": 4, "lr": 1e-2, "seed": 3, "warmup_ratio": 0.0, "max_steps": 4, **train_extra},
        "output_dir": str(out), "run_name": "run",
    }  # fmt: skip


@pytest.fixture
def pair_files(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", pair_rows(16)), write_jsonl(
        tmp_path / "valid.jsonl", pair_rows(4)
    )


def lora_model(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from tunery.tasks import preference

    config = load_config({"model": str(tiny_model_dir), "task": "preference", "data": {"train": "x"}})
    model = preference.load_model(str(tiny_model_dir), torch.device("cpu"), torch.float64, config)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    return model, config


def encoded_pairs(tiny_tokenizer, tmp_path, n=3):
    loaded = load_preferences(write_jsonl(tmp_path / "p.jsonl", pair_rows(n, "messages")))
    return encode_preferences(loaded.examples, tiny_tokenizer, max_length=64).examples


def unpacked_logp(model, side) -> torch.Tensor:
    """Summed answer log-prob of one side alone, with the plain forward (no packing, full logits)."""
    ids = torch.tensor([side.input_ids])
    logits = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    targets, labels = ids[0, 1:], torch.tensor(side.labels[1:])
    keep = labels != -100
    return logits[keep].gather(1, targets[keep][:, None]).sum()


@pytest.mark.parametrize("share_prompts", [False, True], ids=["each-side-whole", "prompt-once"])
def test_a_packed_pair_gives_the_loss_and_gradients_of_the_unpacked_pair(
    tiny_model_dir, tiny_tokenizer, tmp_path, share_prompts
):
    from tunery.tasks.preference import PreferenceLoss, _parts
    from tunery.tasks.preference_reference import collate_sides, shared_prompt_length, shares_prompts

    model, config = lora_model(tiny_model_dir)
    assert shares_prompts(model)  # the preference task's own attention
    pairs = encoded_pairs(tiny_tokenizer, tmp_path)
    for pair in pairs:
        pair.reference = [-20.0, -21.0]
    loss = PreferenceLoss(config.preference, _parts(model), share_prompts)
    batch = loss.collate(pairs, pad_id=0)
    prompts = sum(shared_prompt_length(*pair.sides()) for pair in pairs)
    assert prompts > 10 * len(pairs)  # the rows share a real prompt (system + user turns)
    whole = sum(len(pair.input_ids) for pair in pairs)
    assert batch["input_ids"].shape[1] == (whole - prompts if share_prompts else whole)
    assert ("prefix_lengths" in batch) == share_prompts
    assert collate_sides(pairs)["input_ids"].shape[1] == whole  # sharing is asked for, never the default
    packed, _ = loss.summed_loss(model, batch)
    packed.backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    beta = config.preference.beta
    unpacked = sum(
        -torch.nn.functional.logsigmoid(
            beta * ((unpacked_logp(model, c) + 20.0) - (unpacked_logp(model, r) + 21.0))
        )
        for c, r in (pair.sides() for pair in pairs)
    )
    unpacked.backward()
    torch.testing.assert_close(packed, unpacked, rtol=1e-10, atol=1e-10)
    for name, grad in packed_grads.items():
        # Llama's RMSNorm runs in float32 even in a float64 model, backward too: a shared prompt's
        # gradient is the two sides' sum rounded once, not each rounded apart (about 2e-7 of the largest).
        tolerance = {"rtol": 1e-6, "atol": 1e-8} if share_prompts else {"rtol": 1e-8, "atol": 1e-10}
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, **tolerance)


def test_cached_reference_log_probs_equal_the_on_the_fly_ones_and_so_do_the_losses(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    from tunery.data.preference_tokens import read_reference, reference_key
    from tunery.nn.preference_loss import sequence_logps
    from tunery.tasks.preference import PreferenceLoss, _parts
    from tunery.tasks.preference_reference import collate_sides, fill_reference

    model, config = lora_model(tiny_model_dir)
    pairs = encoded_pairs(tiny_tokenizer, tmp_path, n=5)
    fill_reference(model, _parts(model), pairs, "tiny", batch_size=2)  # computes and writes the cache
    assert read_reference(reference_key(pairs, "tiny"), len(pairs)) == [p.reference for p in pairs]
    again = encoded_pairs(tiny_tokenizer, tmp_path, n=5)
    fill_reference(None, None, again, "tiny", batch_size=2)  # no model: it can only come from the cache
    loss = PreferenceLoss(config.preference, _parts(model))
    batch = collate_sides(again)
    cached, _ = loss.summed_loss(model, batch)
    with torch.no_grad():
        with model.disable_adapter():  # on the fly: the adapter off, in this very batch
            batch["reference"] = sequence_logps(model, _parts(model), batch)[0]
        adapter_on = sequence_logps(model, _parts(model), batch)[0]
    on_the_fly, _ = loss.summed_loss(model, batch)
    torch.testing.assert_close(cached, on_the_fly, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(adapter_on, batch["reference"])  # the adapter is live, so "off" mattered
    assert (
        read_reference(reference_key(pairs, "another-model"), len(pairs)) is None
    )  # the model is in the key


def test_resume_mid_run_equals_an_uninterrupted_run(tiny_model_dir, pair_files, tmp_path):
    straight = tunery.train(
        pref_config(tiny_model_dir, *pair_files, tmp_path / "a", max_steps=6, save_every=3), quiet=True
    )
    killed = pref_config(tiny_model_dir, *pair_files, tmp_path / "b", max_steps=6, save_every=3)
    kill_after_checkpoint(killed, step=3)
    resumed = tunery.train(resume=tmp_path / "b" / "run", quiet=True)
    a = load_file(straight.path / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed.path / "adapter" / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert [r["step"] for r in resumed.history() if "loss" in r] == list(range(1, 7))


def test_dpo_logs_preference_metrics_and_raises_reward_accuracy(tiny_model_dir, pair_files, tmp_path):
    run = tunery.train(
        pref_config(tiny_model_dir, *pair_files, tmp_path, max_steps=12, eval_every=6), quiet=True
    )
    history = run.history()
    first = next(r for r in history if "loss" in r)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at step 1
    assert {"reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected"} <= set(first)
    evals = [r for r in history if "val_loss" in r]
    assert len(evals) >= 2 and evals[-1]["val_reward_accuracy"] >= 0.75 and evals[-1]["val_reward_margin"] > 0


def test_a_preference_run_starts_from_an_sft_run_and_records_the_lineage(tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "sft.jsonl", chat_rows(8))
    sft = tunery.train({"model": str(tiny_model_dir), "data": {"train": str(train), "max_length": 64},
                        "lora": {"r": 4}, "train": {"max_steps": 2, "batch_size": 4},
                        "output_dir": str(tmp_path / "runs"), "run_name": "sft"}, quiet=True)  # fmt: skip
    pairs = write_jsonl(tmp_path / "p.jsonl", pair_rows(8)), write_jsonl(tmp_path / "v.jsonl", pair_rows(2))
    config = pref_config(tiny_model_dir, *pairs, tmp_path / "runs", max_steps=1)
    config["preference"]["init_from"] = str(sft.path)
    run = tunery.train(config | {"run_name": "dpo"}, quiet=True)
    assert run.record["parent"]["name"] == "sft" and run.record["parent"]["task"] == "sft"
    first = next(r for r in run.history() if "loss" in r)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)  # the reference is the SFT model
    by_model_name = pref_config(str(sft.path), *pairs, tmp_path / "runs", max_steps=1) | {"run_name": "dpo2"}
    assert (
        tunery.train(by_model_name, quiet=True).record["parent"]["adapter_hash"]
        == run.record["parent"]["adapter_hash"]
    )


def test_refusals_name_what_to_change(tiny_model_dir, tmp_path):
    from tunery.errors import TuneryError

    unpaired = write_jsonl(tmp_path / "kto.jsonl", pair_rows(4, "unpaired"))
    with pytest.raises(TuneryError, match="preference.loss=kto"):
        tunery.train(pref_config(tiny_model_dir, unpaired, unpaired, tmp_path / "a"), quiet=True)
    pairs = write_jsonl(tmp_path / "p.jsonl", pair_rows(4))
    with pytest.raises(TuneryError, match="method=prompt learns prompt tokens"):
        tunery.train(
            pref_config(tiny_model_dir, pairs, pairs, tmp_path / "b") | {"method": "prompt"}, quiet=True
        )
    broken = write_jsonl(tmp_path / "bad.jsonl", [*pair_rows(2), {"prompt": "q", "chosen": "a"}])
    with pytest.raises(TuneryError, match="line 3, field 'rejected': required field is missing"):
        tunery.train(pref_config(tiny_model_dir, broken, broken, tmp_path / "c"), quiet=True)
    with pytest.raises(TuneryError, match="not a run folder"):
        tunery.train(
            pref_config(tiny_model_dir, pairs, pairs, tmp_path / "d")
            | {"preference": {"init_from": str(tmp_path)}},
            quiet=True,
        )
