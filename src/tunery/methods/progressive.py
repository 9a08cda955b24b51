"""Progressive unfreezing (Howard & Ruder, ULMFiT 2018): train the top group of layers first,
then unfreeze the next group down every `freeze.unfreeze_every` steps (or epochs), so the
lower, more general layers move last and least. With `freeze.lr_decay` each lower group also
gets a smaller learning rate (discriminative fine-tuning).

The schedule is a pure function of (step, epoch): resume lands in the same state.
"""

from __future__ import annotations

from tunery.methods.layers import always_trained, layer_prefixes, set_trainable

SUMMARY = "Unfreeze layer groups top-down every K steps/epochs, optionally with per-group LRs."
MERGEABLE = True


def layer_groups(model, config) -> list[list[str]]:
    """Layer prefixes in groups of `freeze.group_layers`, top group first."""
    top_down = layer_prefixes(model)[::-1]
    size = config.freeze.group_layers
    return [top_down[i : i + size] for i in range(0, len(top_down), size)]


def unfrozen_groups(config, n_groups: int, step: int, epoch: int) -> int:
    """How many groups (from the top) train at this position of the run."""
    f = config.freeze
    count = step if f.unit == "steps" else epoch
    return min(n_groups, 1 + count // f.unfreeze_every)


def at_position(model, config, step: int, epoch: int) -> None:
    groups = layer_groups(model, config)
    n = unfrozen_groups(config, len(groups), step, epoch)
    set_trainable(model, [p for group in groups[:n] for p in group], always_trained(config))


def apply(model, config):
    at_position(model, config, step=0, epoch=0)
    return model


on_step = at_position


def param_groups(model, config) -> list[dict]:
    """Every group goes into the optimiser from the start (AdamW skips tensors without gradients)."""
    lr, decay = config.train.lr, config.freeze.lr_decay or 1.0
    named = list(model.named_parameters(remove_duplicate=False))
    groups, seen = [], set()
    for depth, prefixes in enumerate(layer_groups(model, config)):
        params = _unique(p for n, p in named if any(n.startswith(x) for x in prefixes) and id(p) not in seen)
        groups.append({"params": params, "lr": lr * decay**depth})
        seen.update(id(p) for p in params)
    extra = always_trained(config)
    rest = _unique(p for n, p in named if id(p) not in seen and any(m in n for m in extra))
    if rest:
        groups.insert(0, {"params": rest, "lr": lr})
    return groups


def _unique(parameters) -> list:
    kept: dict[int, object] = {}
    for parameter in parameters:
        kept.setdefault(id(parameter), parameter)
    return list(kept.values())
