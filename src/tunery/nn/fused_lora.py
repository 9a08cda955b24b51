"""A faster training step for plain LoRA layers: base product, dropout and low-rank update in one autograd node.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as six autograd nodes:
nn.Dropout draws its mask with `bernoulli_` (the slowest random kernel on CPU) and the
scale and the sum are full passes over the layer's output. Profiling a SmolLM2 LoRA step
on CPU put dropout alone at ~16% of the step and the extra elementwise passes at another
~10%. Here one `torch.autograd.Function` does the same arithmetic with:

- the dropout mask drawn from raw random bits (`keep_mask`), kept as bool and applied
  with `where` (no float copy of the mask);
- the dropout scale folded into the rank-r product, the LoRA scale into an `addmm`,
  so neither touches a full-width tensor;
- the input gradient as one `addmm` of the base and LoRA parts.

The result is the same function and the same dropout distribution (independent
Bernoulli(1 - p) per element, scaled by 1 / (1 - p)); only the random stream differs
from nn.Dropout's. With fp32 adapters over a bf16 base (bf16 training) the products run
in bf16 and the adapters' gradients are cast back to fp32, as autocast would do. Layers
PEFT builds differently (DoRA, quantised bases, several active adapters, merged weights,
mixed-adapter batches) keep PEFT's forward, so this is a pure speed-up that can never
change what a configuration means.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class FusedLoraLinear(torch.autograd.Function):
    """y = x Wᵀ + b + s · ((x ⊙ m) c) Aᵀ Bᵀ, with m the dropout mask and c = 1 / (1 - p)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, keep, keep_scale: float):
        flat = x.reshape(-1, x.shape[-1])
        dropped = flat if keep is None else torch.where(keep, flat, 0)  # no cast of the mask, unlike `* keep`
        low_rank = torch.mm(dropped, lora_a.t())
        if keep_scale != 1.0:
            low_rank.mul_(keep_scale)
        out = F.linear(flat, weight, bias)
        out.addmm_(low_rank, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(weight, lora_a, lora_b, dropped, low_rank, keep)
        ctx.scaling, ctx.keep_scale, ctx.x_shape = scaling, keep_scale, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        weight, lora_a, lora_b, dropped, low_rank, keep = ctx.saved_tensors
        grad = grad_out.reshape(-1, grad_out.shape[-1])
        grad_low_rank = torch.mm(grad, lora_b).mul_(ctx.scaling)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[4]:
            grad_b = torch.mm(grad.t(), low_rank).mul_(ctx.scaling)
        if ctx.needs_input_grad[3]:
            grad_a = torch.mm(grad_low_rank.t(), dropped).mul_(ctx.keep_scale)
        if ctx.needs_input_grad[0]:
            lora_part = torch.mm(grad_low_rank, lora_a)
            if keep is not None:
                lora_part = torch.where(keep, lora_part, 0)
            grad_x = torch.addmm(lora_part, grad, weight, beta=ctx.keep_scale).view(ctx.x_shape)
        return grad_x, None, None, grad_a, grad_b, None, None, None


def fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """PEFT lora.Linear.forward, fused where the layer is plain LoRA; PEFT's own path otherwise."""
    if args or kwargs or not _plain(self) or not _same_precision(self, x):
        peft_linear: Any = type(self).__mro__[1]  # the PEFT class this fused subclass extends
        return peft_linear.forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    # fp32 adapters over a bf16 base: products in bf16, gradients cast back to the fp32 weights.
    lora_a, lora_b = self.lora_A[name].weight.to(x.dtype), self.lora_B[name].weight.to(x.dtype)
    p = _dropout_p(self.lora_dropout[name])
    keep = None
    if self.training and p > 0:
        keep = keep_mask(x.shape[:-1].numel(), x.shape[-1], p, x.device)
    keep_scale = 1.0 / (1.0 - p) if keep is not None else 1.0
    base = self.base_layer
    return FusedLoraLinear.apply(
        x, base.weight, base.bias, lora_a, lora_b, float(self.scaling[name]), keep, keep_scale
    )


def keep_mask(rows: int, width: int, p: float, device: torch.device) -> torch.Tensor:
    """Bernoulli(1 - p) per element, as a bool [rows, width].

    On a CPU, `rand >= p` spends one generator call and a float conversion per element
    (13% of a bf16 SmolLM2 step); here each 64-bit draw gives four 15-bit uniforms, 3x
    faster. p is rounded to a multiple of 1/32768 (0.05 becomes 0.04999).
    """
    if device.type != "cpu":
        return torch.rand(rows, width, device=device) >= p
    n = rows * width
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # 63 random bits: four 15-bit fields
    return ((bits.view(torch.int16)[:n] & 0x7FFF) >= round(p * 32768)).view(rows, width)


def _plain(layer) -> bool:
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return False
    name = layer.active_adapters[0]
    return (
        name in layer.lora_A
        and name not in getattr(layer, "lora_variant", {})  # DoRA and friends
        and type(layer.base_layer) is torch.nn.Linear  # not a quantised or fan-in-fan-out base
        and not getattr(layer, "fan_in_fan_out", False)
        and _adapter_precision_fits(layer.lora_A[name].weight.dtype, layer.base_layer.weight.dtype)
        and not _trains(layer.base_layer)  # the fused backward leaves the base frozen
    )


def _adapter_precision_fits(adapter: torch.dtype, base: torch.dtype) -> bool:
    """The adapter as precise as the base or more: fp32 adapters over a bf16/fp16 base are what PEFT makes."""
    return adapter == base or (adapter == torch.float32 and base in (torch.bfloat16, torch.float16))


def _trains(base: torch.nn.Linear) -> bool:
    return base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad)


def _same_precision(layer, x: torch.Tensor) -> bool:
    """Autocast and mixed dtypes are PEFT's business: it casts per product."""
    return x.dtype == layer.base_layer.weight.dtype and not torch.is_autocast_enabled(x.device.type)


def _dropout_p(dropout) -> float:
    return float(dropout.p) if isinstance(dropout, torch.nn.Dropout) else 0.0


_FUSED_CLASSES: dict[type, type] = {}


def _fused_class(cls: type) -> type:
    """A subclass of PEFT's layer class with the fused forward (made once per class)."""
    if cls not in _FUSED_CLASSES:
        _FUSED_CLASSES[cls] = type(f"Fused{cls.__name__}", (cls,), {"forward": fused_forward})
    return _FUSED_CLASSES[cls]


def use_fused_lora(model) -> int:
    """Give every plain LoRA linear layer of `model` the fused forward; returns how many.

    The layers stay instances of PEFT's class (isinstance checks, saving, merging and
    unloading behave as before); only `forward` changes.
    """
    from peft.tuners.lora import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if type(module) is LoraLinear and _plain(module):
            module.__class__ = _fused_class(LoraLinear)
            fused += 1
    return fused
