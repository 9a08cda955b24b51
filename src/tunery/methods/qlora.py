"""QLoRA: LoRA on a base model whose weights are stored in 4-bit NF4 (or 8-bit) by bitsandbytes
(Dettmers et al., 2023). The frozen weights take a quarter of their fp16 memory; the adapter
trains in full precision on top.

bitsandbytes 0.50 runs 4- and 8-bit layers on CUDA and on x86/ARM CPUs. `check` refuses
before any weight is loaded when the package or the device cannot, and says what to use.
On CUDA:

    tunery train examples/demo.yaml --set method=qlora --set qlora.paged_optimizer=true
"""

from __future__ import annotations

from dataclasses import dataclass

from tunery.config import LoraConfig, QloraConfig
from tunery.config.registry import method_spec
from tunery.methods import Method, MethodUnavailable
from tunery.methods.lora import lora_config


@dataclass(frozen=True)
class QloraOptions:
    lora: LoraConfig  # the adapter trained on top
    qlora: QloraConfig  # how the base weights are quantised
    gradient_checkpointing: bool  # prepared for by prepare_model_for_kbit_training


def options(config) -> QloraOptions:
    return QloraOptions(config.lora, config.qlora, config.train.gradient_checkpointing)


def check(options: QloraOptions, device) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise MethodUnavailable(
            f"method=qlora needs bitsandbytes ({err}); `pip install bitsandbytes==0.50.2`, or use method=lora"
        ) from None
    if device.type not in ("cuda", "cpu"):
        raise MethodUnavailable(
            f"method=qlora: bitsandbytes has no {device.type} backend; use method=lora on {device.type}, "
            "or qlora on a CUDA GPU or the CPU"
        )
    if options.qlora.paged_optimizer and device.type != "cuda":
        raise MethodUnavailable(
            "qlora.paged_optimizer=true pages optimiser state through CUDA unified memory and needs a CUDA "
            "device; set qlora.paged_optimizer=false"
        )


def load_kwargs(options: QloraOptions, device) -> dict:
    import torch
    from transformers import BitsAndBytesConfig

    q = options.qlora
    compute = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    quantization = BitsAndBytesConfig(
        load_in_4bit=q.bits == 4,
        load_in_8bit=q.bits == 8,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute,
    )
    # Quantised weights are placed while loading; they cannot be moved with .to() afterwards.
    return {"quantization_config": quantization, "device_map": {"": str(device)}}


def optimizer_class(options: QloraOptions) -> type:
    if options.qlora.paged_optimizer:
        from bitsandbytes.optim import PagedAdamW8bit

        return PagedAdamW8bit
    import torch

    return torch.optim.AdamW


def apply(model, options: QloraOptions, *, task_type: str, total_steps: int):
    from peft import get_peft_model, prepare_model_for_kbit_training

    # Casts norms and the head to fp32 and lets gradients reach the adapters through frozen inputs.
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=options.gradient_checkpointing)
    return get_peft_model(model, lora_config(model, options.lora, task_type))


METHOD = Method(  # merged into the base model loaded in full precision
    method_spec("qlora"),
    options=options,
    apply=apply,
    check=check,
    load_kwargs=load_kwargs,
    optimizer_class=optimizer_class,
)
