"""DoRA: LoRA that learns each weight's magnitude apart from its direction (Liu et al., 2024).

`method: dora` is `method: lora` with `lora.use_dora: true`; the other `lora` options apply.
"""

from __future__ import annotations

from tunery.config import LoraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method, lora


def options(config) -> LoraConfig:
    return config.lora.model_copy(update={"use_dora": True})


METHOD = Method(method_spec("dora"), options=options, apply=lora.apply)
