"""The fused LoRA layer is the same function as PEFT's, with the same gradients; only speed differs."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tunery.nn.fused_lora import FusedLoraLinear, use_fused_lora


def lora_model(model_dir, dropout: float = 0.0, **extra):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", **extra)
    model = get_peft_model(model, config)
    with torch.no_grad():  # B starts at zero; give it values so the update shows in outputs and gradients
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    return model


def loss_and_grads(model, input_ids):
    model.zero_grad()
    loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_the_fused_function_has_the_gradients_of_its_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    lora_a = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    lora_b = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(6, 5) >= 0.3

    def fused(x, a, b):
        return FusedLoraLinear.apply(x, weight, bias, a, b, 0.5, keep, 1 / 0.7)

    assert torch.autograd.gradcheck(fused, (x, lora_a, lora_b))
    dropped = x.reshape(6, 5) * keep / 0.7
    expected = x.reshape(6, 5) @ weight.T + bias + 0.5 * dropped @ lora_a.T @ lora_b.T
    torch.testing.assert_close(fused(x, lora_a, lora_b).reshape(6, 4), expected)


def test_without_dropout_loss_and_gradients_equal_peft(tiny_model_dir):
    peft_model = lora_model(tiny_model_dir)
    fused_model = copy.deepcopy(peft_model)
    assert (
        use_fused_lora(fused_model)
        == sum(1 for n, _ in peft_model.named_modules() if n.endswith("q_proj")) * 7
    )
    input_ids = torch.randint(0, 100, (2, 12))

    peft_loss, peft_grads = loss_and_grads(peft_model.train(), input_ids)
    fused_loss, fused_grads = loss_and_grads(fused_model.train(), input_ids)

    assert fused_loss == pytest.approx(peft_loss, rel=1e-6)
    assert peft_grads.keys() == fused_grads.keys()
    for name in peft_grads:
        torch.testing.assert_close(fused_grads[name], peft_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_dropout_drops_the_configured_share_and_is_off_in_eval(tiny_model_dir):
    peft_model = lora_model(tiny_model_dir, dropout=0.3)
    fused_model = copy.deepcopy(peft_model)
    use_fused_lora(fused_model)
    input_ids = torch.randint(0, 100, (2, 12))

    with torch.no_grad():
        torch.testing.assert_close(fused_model.eval()(input_ids).logits, peft_model.eval()(input_ids).logits)
        fused_model.train()
        first, second = fused_model(input_ids).logits, fused_model(input_ids).logits
    assert not torch.equal(first, second)  # a fresh mask every pass

    layer = fused_model.base_model.model.model.layers[0].self_attn.q_proj
    masks = []
    original = FusedLoraLinear.apply
    try:
        FusedLoraLinear.apply = lambda *args: masks.append(args[6]) or original(*args)
        with torch.no_grad():
            layer(torch.randn(64, 64, layer.in_features))
    finally:
        FusedLoraLinear.apply = original
    assert masks[0].float().mean().item() == pytest.approx(0.7, abs=0.02)


def test_layers_peft_builds_differently_keep_peft_forward(tiny_model_dir):
    dora = lora_model(tiny_model_dir, use_dora=True)
    assert use_fused_lora(dora) == 0

    model = lora_model(tiny_model_dir)
    use_fused_lora(model)
    input_ids = torch.randint(0, 100, (1, 8))
    with torch.no_grad():
        tuned = model(input_ids).logits
        with model.disable_adapter():  # the base model, as evaluation compares against
            base = model(input_ids).logits
    assert not torch.allclose(tuned, base)


def test_a_fused_run_saves_an_adapter_plain_peft_loads(tiny_model_dir, tmp_path):
    from peft import PeftModel

    model = lora_model(tiny_model_dir)
    use_fused_lora(model)
    model.save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    input_ids = torch.randint(0, 100, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(input_ids).logits, model.eval()(input_ids).logits)


def test_fp32_adapters_over_a_bf16_base_train_like_peft_in_bf16(tiny_model_dir):
    peft_model = lora_model(tiny_model_dir)
    peft_model.base_model.model.to(torch.bfloat16)
    for name, parameter in peft_model.named_parameters():  # what PEFT makes on a bf16 model
        if "lora_" in name:
            parameter.data = parameter.data.float()
    fused_model = copy.deepcopy(peft_model)
    assert use_fused_lora(fused_model) > 0
    input_ids = torch.randint(0, 100, (2, 12))

    peft_loss, peft_grads = loss_and_grads(peft_model.train(), input_ids)
    fused_loss, fused_grads = loss_and_grads(fused_model.train(), input_ids)

    assert fused_loss == pytest.approx(peft_loss, rel=2e-2)  # PEFT runs the low-rank part in fp32
    for name, grad in fused_grads.items():
        assert grad.dtype == torch.float32, name  # the optimiser's weights stay fp32
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), peft_grads[name].flatten(), dim=0)
        assert cosine > 0.99, name
