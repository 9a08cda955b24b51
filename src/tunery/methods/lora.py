"""LoRA: low-rank updates A·B added to frozen linear layers (Hu et al., 2021), through PEFT."""

from __future__ import annotations

SUMMARY = "Low-rank adapters on linear layers; small, fast, mergeable. The default."
MERGEABLE = True


def apply(model, config):
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)
