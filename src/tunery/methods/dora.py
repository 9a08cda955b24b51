"""DoRA: LoRA that learns each weight's magnitude apart from its direction (Liu et al., 2024).

`method: dora` is `method: lora` with `lora.use_dora: true`; the other `lora` options apply.
"""

from __future__ import annotations

from tunery.methods import lora

SUMMARY = "LoRA with a learned magnitude per weight column; closer to full fine-tuning, a bit slower."
MERGEABLE = True


def apply(model, config):
    return lora.apply(
        model, config.model_copy(update={"lora": config.lora.model_copy(update={"use_dora": True})})
    )
