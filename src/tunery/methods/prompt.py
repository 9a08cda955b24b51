"""Prompt tuning: learned input embeddings prepended to every example (Lester et al., 2021).

With `prompt.init_text` the soft prompt starts from that text's token embeddings, which
trains faster and steadier than a random start.
"""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap

SUMMARY = "A learned soft prompt (optionally initialised from text); tiny, cannot be merged."
MERGEABLE = False


def apply(model, config):
    from peft import PromptTuningConfig

    prompt = config.prompt
    text_init = {}
    if prompt.init_text:
        text_init = {
            "prompt_tuning_init": "TEXT",
            "prompt_tuning_init_text": prompt.init_text,
            "tokenizer_name_or_path": model.name_or_path,
        }
    peft_config = PromptTuningConfig(
        num_virtual_tokens=prompt.virtual_tokens, task_type=task_type(config), **text_init
    )
    return wrap(model, peft_config)
