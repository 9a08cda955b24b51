"""QLoRA for real on the CPU (bitsandbytes 0.50 runs NF4 there), and its refusals before any weight loads."""

from __future__ import annotations

import math

import pytest
import torch

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.methods.test_methods import method_config
from tunery.methods import MethodUnavailable

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def quantisable_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny llama whose layers bitsandbytes' CPU kernels accept (output widths a multiple of 32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-llama-64")
    LlamaForCausalLM(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qlora-data")
    return write_jsonl(folder / "train.jsonl", chat_rows(12)), write_jsonl(
        folder / "valid.jsonl", chat_rows(4)
    )


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_trains_on_quantised_weights_and_reloads(bits, quantisable_model_dir, files, tmp_path):
    import bitsandbytes as bnb

    from tunery.inference import load_run_model, merge_run

    overrides = {"method": "qlora", "qlora": {"bits": bits}}
    run = tunery.train(method_config(quantisable_model_dir, files, tmp_path, overrides), quiet=True)
    losses = [row["loss"] for row in run.history() if "loss" in row]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)

    model, tokenizer = load_run_model(run.path, device="cpu")
    layer = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert isinstance(layer, bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt)
    if bits == 4:
        assert layer.weight.quant_type == "nf4" and layer.weight.quant_state.nested  # double quantisation
    # Merging folds the adapter into the full-precision base: same logits as base + adapter in fp32.
    full, _ = load_run_model(run.path, device="cpu", quantized=False)
    merged_dir = merge_run(run.path, tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    ids = tokenizer("item 3 quantity 4", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, full(input_ids=ids).logits, rtol=1e-4, atol=1e-4
        )
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_a_paged_optimiser_without_cuda_is_refused_before_any_weight_loads(files, tmp_path, monkeypatch):
    import transformers

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the refusal")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", must_not_load)
    config = method_config("unused", files, tmp_path, {"method": "qlora", "qlora": {"paged_optimizer": True}})
    config["model"] = str(tmp_path)  # any folder: the refusal comes first
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MethodUnavailable, match="needs a CUDA device; set qlora.paged_optimizer=false"):
        tunery.train(config | {"model": {"name": str(tmp_path), "device": "cpu"}}, quiet=True)


def test_without_bitsandbytes_qlora_says_what_to_install(monkeypatch):
    import sys

    from tunery.config import load_config
    from tunery.methods import get_method

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    qlora = get_method("qlora")
    options = qlora.options(load_config({"data": {"train": "x"}, "method": "qlora"}))
    with pytest.raises(MethodUnavailable, match=r"pip install bitsandbytes==0.50.2.*method=lora"):
        qlora.check(options, torch.device("cpu"))
    with pytest.raises(MethodUnavailable, match="no mps backend"):
        monkeypatch.delitem(sys.modules, "bitsandbytes")
        qlora.check(options, torch.device("mps"))
