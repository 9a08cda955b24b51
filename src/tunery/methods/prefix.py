"""Prefix tuning: learned key/value vectors prepended in every attention layer (Li & Liang, 2021).

Nothing in the weights changes, so there is nothing to merge: the prefix is applied at run time.
"""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap

SUMMARY = "Learned key/value prefixes in every layer; weights untouched, cannot be merged."
MERGEABLE = False


def apply(model, config):
    from peft import PrefixTuningConfig

    peft_config = PrefixTuningConfig(
        num_virtual_tokens=config.prompt.virtual_tokens, task_type=task_type(config)
    )
    return wrap(model, peft_config)
