"""LLaMA-Adapter: zero-gated adaption prompts in the top attention layers (Zhang et al., 2023).

PEFT supports it for llama, mistral and gpt2-style decoders only; other models get a
clear error before training starts.
"""

from __future__ import annotations

from operator import attrgetter

from tunery.config import PromptConfig
from tunery.config.registry import method_spec
from tunery.methods import Method, MethodUnavailable


def apply(model, prompt: PromptConfig, *, task_type: str, total_steps: int):
    from peft import AdaptionPromptConfig, get_peft_model
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    model_type = model.config.model_type
    if model_type not in TRANSFORMERS_MODEL_CONFIG:
        raise MethodUnavailable(
            f"method=llama_adapter supports {', '.join(TRANSFORMERS_MODEL_CONFIG)} models, not {model_type}; "
            "use method=prefix or method=lora"
        )
    layers = min(prompt.adapter_layers, model.config.num_hidden_layers)
    peft_config = AdaptionPromptConfig(
        adapter_len=prompt.virtual_tokens, adapter_layers=layers, task_type=task_type
    )
    return get_peft_model(model, peft_config)


METHOD = Method(method_spec("llama_adapter"), options=attrgetter("prompt"), apply=apply)
