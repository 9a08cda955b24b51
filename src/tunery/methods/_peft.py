"""What every PEFT-wrapped method needs: the PEFT task type of the run's task."""

from __future__ import annotations

TASK_TYPES = {"sft": "CAUSAL_LM", "classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM"}


def task_type(config) -> str:
    return TASK_TYPES[config.task]


def wrap(model, peft_config):
    from peft import get_peft_model

    return get_peft_model(model, peft_config)
