"""OFT: an orthogonal, block-diagonal rotation of each weight's output space (Qiu et al., 2023).

Rotations keep the angles between neurons, which holds the pretrained knowledge steadier
than an additive update. `lora.r` is the number of blocks per layer.
"""

from __future__ import annotations

from operator import attrgetter

from tunery.config import LoraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods._peft import wrap
from tunery.methods.targets import linear_targets


def apply(model, lora: LoraConfig, *, task_type: str, total_steps: int):
    from peft import OFTConfig

    peft_config = OFTConfig(
        r=lora.r,
        oft_block_size=0,  # PEFT takes either the block count or the block size; we give the count
        module_dropout=lora.dropout,
        target_modules=linear_targets(model, lora.target_modules),
        modules_to_save=lora.modules_to_save,
        task_type=task_type,
    )
    return wrap(model, peft_config)


METHOD = Method(method_spec("oft"), options=attrgetter("lora"), apply=apply)
