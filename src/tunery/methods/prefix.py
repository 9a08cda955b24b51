"""Prefix tuning: learned key/value vectors prepended in every attention layer (Li & Liang, 2021).

Nothing in the weights changes, so there is nothing to merge: the prefix is applied at run time.
"""

from __future__ import annotations

from operator import attrgetter

from tunery.config import PromptConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap


def apply(model, prompt: PromptConfig, *, task_type: str, total_steps: int):
    from peft import PrefixTuningConfig

    peft_config = PrefixTuningConfig(num_virtual_tokens=prompt.virtual_tokens, task_type=task_type)
    return wrap(model, peft_config)


METHOD = Method(method_spec("prefix"), options=attrgetter("prompt"), apply=apply)
