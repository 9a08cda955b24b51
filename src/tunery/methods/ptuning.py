"""P-tuning: a soft prompt produced by a small MLP encoder, which trains steadier than free embeddings (Liu et al., 2021)."""

from __future__ import annotations

from operator import attrgetter

from tunery.config import PromptConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap


def apply(model, prompt: PromptConfig, *, task_type: str, total_steps: int):
    from peft import PromptEncoderConfig

    peft_config = PromptEncoderConfig(
        num_virtual_tokens=prompt.virtual_tokens,
        encoder_hidden_size=prompt.encoder_hidden_size,
        task_type=task_type,
    )
    return wrap(model, peft_config)


METHOD = Method(method_spec("ptuning"), options=attrgetter("prompt"), apply=apply)
