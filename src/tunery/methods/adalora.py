"""AdaLoRA: LoRA whose rank budget moves to the layers that need it (Zhang et al., 2023).

Starts every layer at `adalora.init_r` and prunes singular values by importance until the
average rank is `lora.r`; the budget is updated after each optimiser step (`on_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunery.config import AdaloraConfig, LoraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap
from tunery.methods.targets import linear_targets


@dataclass(frozen=True)
class AdaloraOptions:
    lora: LoraConfig  # target rank, alpha, dropout, target modules
    adalora: AdaloraConfig  # starting rank and the schedule's shape


def options(config) -> AdaloraOptions:
    return AdaloraOptions(config.lora, config.adalora)


def apply(model, options: AdaloraOptions, *, task_type: str, total_steps: int):
    from peft import AdaLoraConfig

    steps = total_steps or 1000  # the rank schedule is laid out over the whole run
    lora, ada = options.lora, options.adalora
    tinit = int(ada.warmup_ratio * steps)
    tfinal = int(ada.final_ratio * steps)
    peft_config = AdaLoraConfig(
        init_r=max(ada.init_r, lora.r),
        target_r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # PEFT annotates int; a float alpha works (it only scales)
        lora_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        total_step=max(steps, tinit + tfinal + 1),
        tinit=tinit,
        tfinal=tfinal,
        deltaT=max(1, (steps - tinit - tfinal) // 10),
        task_type=task_type,
    )
    return wrap(model, peft_config)


def on_step(model, options: AdaloraOptions, step: int, epoch: int) -> None:
    # AdaLoRA masks singular values after the optimiser step, from the gradients just used.
    model.base_model.update_and_allocate(step - 1)  # PEFT counts steps from 0; `step` is steps done


METHOD = Method(method_spec("adalora"), options=options, apply=apply, on_step=on_step)
