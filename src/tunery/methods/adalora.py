"""AdaLoRA: LoRA whose rank budget moves to the layers that need it (Zhang et al., 2023).

Starts every layer at `adalora.init_r` and prunes singular values by importance until the
average rank is `lora.r`; the budget is updated after each optimiser step (`on_step`).
"""

from __future__ import annotations

from tunery.methods._peft import task_type, wrap
from tunery.methods.targets import linear_targets

SUMMARY = "LoRA with ranks reallocated during training to the layers that matter most."
MERGEABLE = True
NEEDS_TOTAL_STEPS = True  # the rank schedule is laid out over the whole run


def apply(model, config, total_steps: int | None = None):
    from peft import AdaLoraConfig

    steps = total_steps or config.train.max_steps or 1000
    ada = config.adalora
    tinit = int(ada.warmup_ratio * steps)
    tfinal = int(ada.final_ratio * steps)
    peft_config = AdaLoraConfig(
        init_r=max(ada.init_r, config.lora.r),
        target_r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=linear_targets(model, config.lora.target_modules),
        total_step=max(steps, tinit + tfinal + 1),
        tinit=tinit,
        tfinal=tfinal,
        deltaT=max(1, (steps - tinit - tfinal) // 10),
        task_type=task_type(config),
    )
    return wrap(model, peft_config)


def on_step(model, config, step: int, epoch: int) -> None:
    # AdaLoRA masks singular values after the optimiser step, from the gradients just used.
    model.base_model.update_and_allocate(step - 1)  # PEFT counts steps from 0; `step` is steps done
