"""Grouped LoRA: each row of one forward pass through its own adapter gives PEFT's answer for it."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tunery.serve.grouped_lora import BASE, AdapterBank, groupable


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_a_batch_mixing_two_adapters_and_the_base_matches_peft_row_by_row(tiny_model_dir, two_runs):
    ids = torch.tensor([[5, 9, 14, 3, 22, 7]] * 3)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    bare = logits_of(model, ids[:1])
    peft = [logits_of(PeftModel.from_pretrained(model, run / "adapter"), ids[:1]) for run in two_runs]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    bank = AdapterBank(model, capacity=2)
    bank.load("alpha", two_runs[0] / "adapter")
    bank.load("beta", two_runs[1] / "adapter")
    with bank.routing(["alpha", BASE, "beta"]):
        grouped = logits_of(model, ids)
    assert torch.equal(grouped[1], bare[0]), "a base row sees exactly the bare model"
    for row, expected in ((0, peft[0][0]), (2, peft[1][0])):
        assert (expected - bare[0]).abs().max() > 1e-2, "the adapter should change the logits"
        torch.testing.assert_close(grouped[row], expected, atol=2e-3, rtol=2e-3)  # bf16-stored A and B


def test_adapters_are_stored_in_bfloat16_next_to_a_float32_base(tiny_model_dir, two_runs):
    from peft.utils import load_peft_weights

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    base_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bank = AdapterBank(model, capacity=2)
    for name, run in zip(("alpha", "beta"), two_runs, strict=True):
        bank.load(name, run / "adapter")
    saved = [load_peft_weights(str(run / "adapter")) for run in two_runs]
    adapter_numbers = sum(t.numel() for weights in saved for t in weights.values())
    stacked = sum(b.numel() * b.element_size() for b in model.buffers() if b.dtype == torch.bfloat16)
    assert stacked == adapter_numbers * 2, "two bytes per adapter number, nothing else"
    assert sum(p.numel() * p.element_size() for p in model.parameters()) == base_bytes, "one copy of the base"


def test_a_full_bank_reuses_the_least_recently_used_slot_but_never_one_in_use(tiny_model_dir, two_runs):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    bank = AdapterBank(model, capacity=1)
    bank.load("alpha", two_runs[0] / "adapter")
    with pytest.raises(RuntimeError, match="in use"):
        bank.load("beta", two_runs[1] / "adapter", keep=["alpha"])
    bank.load("beta", two_runs[1] / "adapter")
    assert list(bank.slot_of) == ["beta"]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"peft_type": "LORA", "init_lora_weights": True}, True),
        ({"peft_type": "LORA", "use_rslora": True, "init_lora_weights": "gaussian"}, True),
        ({"peft_type": "LORA", "use_dora": True}, False),
        ({"peft_type": "LORA", "init_lora_weights": "pissa"}, False),  # rewrites the base weights on load
        ({"peft_type": "LORA", "modules_to_save": ["lm_head"]}, False),
        ({"peft_type": "IA3"}, False),
    ],
    ids=["lora", "rslora", "dora", "pissa", "modules-to-save", "ia3"],
)
def test_only_plain_lora_is_grouped(tmp_path, config, expected):
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    (tmp_path / "adapter_model.safetensors").touch()
    assert groupable(tmp_path) is expected


def test_an_adapter_saved_only_as_pickle_is_not_grouped(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / "adapter_model.bin").touch()
    assert groupable(tmp_path) is False
