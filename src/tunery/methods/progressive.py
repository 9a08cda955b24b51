"""Progressive unfreezing (Howard & Ruder, ULMFiT 2018): train the top group of layers first,
then unfreeze the next group down every `freeze.unfreeze_every` steps (or epochs), so the
lower, more general layers move last and least. With `freeze.lr_decay` each lower group also
gets a smaller learning rate (discriminative fine-tuning).

The schedule is a pure function of (step, epoch): resume lands in the same state.
"""

from __future__ import annotations

from tunery.config.registry import method_spec
from tunery.methods import Method
from tunery.methods.layers import FreezeOptions, freeze_options, layer_prefixes, set_trainable


def layer_groups(model, options: FreezeOptions) -> list[list[str]]:
    """Layer prefixes in groups of `freeze.group_layers`, top group first."""
    top_down = layer_prefixes(model)[::-1]
    size = options.freeze.group_layers
    return [top_down[i : i + size] for i in range(0, len(top_down), size)]


def unfrozen_groups(options: FreezeOptions, n_groups: int, step: int, epoch: int) -> int:
    """How many groups (from the top) train at this position of the run."""
    f = options.freeze
    count = step if f.unit == "steps" else epoch
    return min(n_groups, 1 + count // f.unfreeze_every)


def at_position(model, options: FreezeOptions, step: int, epoch: int) -> None:
    groups = layer_groups(model, options)
    n = unfrozen_groups(options, len(groups), step, epoch)
    set_trainable(model, [p for group in groups[:n] for p in group], options.always_trained)


def apply(model, options: FreezeOptions, *, task_type: str, total_steps: int):
    at_position(model, options, step=0, epoch=0)
    return model


def param_groups(model, options: FreezeOptions) -> list[dict]:
    """Every group goes into the optimiser from the start (AdamW skips tensors without gradients)."""
    lr, decay = options.lr, options.freeze.lr_decay or 1.0
    named = list(model.named_parameters(remove_duplicate=False))
    groups: list[dict] = []
    seen: set[int] = set()
    for depth, prefixes in enumerate(layer_groups(model, options)):
        params = _unique(p for n, p in named if any(n.startswith(x) for x in prefixes) and id(p) not in seen)
        groups.append({"params": params, "lr": lr * decay**depth})
        seen.update(id(p) for p in params)
    extra = options.always_trained
    rest = _unique(p for n, p in named if id(p) not in seen and any(m in n for m in extra))
    if rest:
        groups.insert(0, {"params": rest, "lr": lr})
    return groups


def _unique(parameters) -> list:
    kept: dict[int, object] = {}
    for parameter in parameters:
        kept.setdefault(id(parameter), parameter)
    return list(kept.values())


METHOD = Method(
    method_spec("progressive"),
    options=freeze_options,
    apply=apply,
    param_groups=param_groups,
    on_step=at_position,
    at_position=at_position,
)
