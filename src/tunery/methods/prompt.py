"""Prompt tuning: learned input embeddings prepended to every example (Lester et al., 2021).

With `prompt.init_text` the soft prompt starts from that text's token embeddings, which
trains faster and steadier than a random start.
"""

from __future__ import annotations

from operator import attrgetter

from tunery.config import PromptConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap


def apply(model, prompt: PromptConfig, *, task_type: str, total_steps: int):
    from peft import PromptTuningConfig

    text_init = {}
    if prompt.init_text:
        text_init = {
            "prompt_tuning_init": "TEXT",
            "prompt_tuning_init_text": prompt.init_text,
            "tokenizer_name_or_path": model.name_or_path,
        }
    peft_config = PromptTuningConfig(
        num_virtual_tokens=prompt.virtual_tokens, task_type=task_type, **text_init
    )
    return wrap(model, peft_config)


METHOD = Method(method_spec("prompt"), options=attrgetter("prompt"), apply=apply)
