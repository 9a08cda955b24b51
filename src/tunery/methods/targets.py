"""Which layers "all linear layers" means, per architecture family.

PEFT's own "all-linear" finds linear layers by type; naming them per family lets
IA3 know its feed-forward layers, keeps pooler and head layers out, and makes the
default the same whatever PEFT version resolves it.
"""

from __future__ import annotations

_LLAMA = (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
          ["gate_proj", "up_proj", "down_proj"])  # fmt: skip

# model_type -> (every linear layer of the blocks, the feed-forward ones among them)
LINEAR_LAYERS: dict[str, tuple[list[str], list[str]]] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gpt2": (["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"], ["c_fc", "mlp.c_proj"]),
    "gpt_neox": (
        ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
        ["dense_h_to_4h", "dense_4h_to_h"],
    ),
    "bert": (
        ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
        ["intermediate.dense", "output.dense"],
    ),  # fmt: skip
    "t5": (["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"], ["wi", "wi_0", "wi_1", "wo"]),
    "bart": (["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"], ["fc1", "fc2"]),
}


def linear_targets(model, requested: str | list[str]) -> str | list[str]:
    """The module names to adapt: the family's linear layers for 'all-linear', else what was asked."""
    if requested != "all-linear":
        return requested
    family = LINEAR_LAYERS.get(_model_type(model))
    return _present(model, family[0]) if family else "all-linear"


def feedforward_targets(model, targets: str | list[str]) -> list[str] | None:
    """IA3 scales the inputs of feed-forward layers and the outputs of the others."""
    family = LINEAR_LAYERS.get(_model_type(model))
    if family is None or isinstance(targets, str):
        return None
    return [name for name in targets if name in family[1]]


def _present(model, names: list[str]) -> list[str]:
    """Keep the names some module ends with: PEFT refuses a target list naming an absent layer type."""
    modules = [name for name, _ in model.named_modules()]
    return [n for n in names if any(m == n or m.endswith("." + n) for m in modules)]


def _model_type(model) -> str:
    return getattr(getattr(model, "config", None), "model_type", "")
