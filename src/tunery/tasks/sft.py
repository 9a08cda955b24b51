"""Supervised fine-tuning of a causal LM: the data pipeline and loss of the foundation."""

from __future__ import annotations

from tunery.config.registry import task_spec
from tunery.data.prepare import PreparedData, prepare_data

SPEC = task_spec("sft")


def load_model(path: str, device, dtype, config, labels=None, **load_kwargs):
    from transformers import AutoModelForCausalLM

    from tunery.models import model_construction

    attention = attention_for(config)
    with model_construction():
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=dtype,
            attn_implementation=attention,
            trust_remote_code=config.model.trust_remote_code,
            **load_kwargs,
        )
    return model if "device_map" in load_kwargs else model.to(device)


def attention_for(config) -> str:
    """The configured attention, else SDPA; for packed rows SDPA split per example (varlen)."""
    if config.model.attn_implementation:
        return config.model.attn_implementation
    if config.batching == "packed":
        from tunery.nn.varlen_attention import register

        return register()
    return "sdpa"


def prepare(config, tokenizer) -> PreparedData:
    return prepare_data(config.data, tokenizer, config.train.seed)


def loss_for(model, data, config):
    from tunery.nn.loss import causal_lm_parts

    return causal_lm_parts(model)
