"""The server's ceiling for every number a job's config may hold: one table, checked on every job.

    check_config(config, settings)       # 400 `over_server_limit` naming e.g. tunery.lora.rank_pattern.q_proj
    numeric_keys()                       # every number the config schema takes, with the schema's own bound

A number a request sets reaches the training process: a rank becomes a matrix, `virtual_tokens` a
tensor, `grad_accum` a loop. Unbounded, one job asked for 2.3 TB and failed as an internal error. The
config schema (`tunery.config`) says what is valid anywhere; this table says what this server runs.
`numeric_keys` walks the schema's models (sections, dict values, list items), and
tests/service/test_ceilings.py fails when a numeric key has neither a row here nor a bound of its
own in the schema (`le`/`lt`, or a Literal of numbers), so a new key cannot be forgotten.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tunery.config import TuneryConfig, default_lr
from tunery.config.registry import METHOD_NAMES, method_spec
from tunery.service.errors import ApiError
from tunery.service.schemas.jobs import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LR_MULTIPLIER
from tunery.settings import Settings

MAX_GRAD_ACCUM = 1024  # micro-batches a step: 1024 x MAX_BATCH_SIZE examples is past any real step
MAX_LAYERS = 1024  # transformer layers: past the deepest model there is
MAX_HIDDEN = 65_536  # a prompt encoder's width: past the widest model there is
MAX_CHECKPOINTS = 100  # kept on disk, each an adapter (or a whole model)
MAX_SCALE = 1e6  # scaling numerators and loss weights: past any useful value, before float overflow
MAX_DECAY = 10.0  # weight decay: past 1 the weights shrink to nothing each step anyway
MAX_GRAD_NORM = 1e6

Most = float | Callable[[Settings], float]
_steps: Most = lambda s: s.max_job_steps  # noqa: E731 - a table of readers reads best as lambdas
_rank: Most = lambda s: s.max_job_lora_rank  # noqa: E731
_length: Most = lambda s: s.max_job_length  # noqa: E731

# dotted path ("lora.rank_pattern.*": each value of the dict; "x[]": each item of a list) -> most allowed
CEILINGS: dict[str, Most] = {  # checked in this order; the first value over its ceiling is named
    "train.epochs": MAX_EPOCHS,
    "train.max_steps": _steps,
    "train.batch_size": MAX_BATCH_SIZE,
    "train.grad_accum": MAX_GRAD_ACCUM,
    "train.max_batch_tokens": lambda s: s.max_job_length * MAX_BATCH_SIZE,
    "train.lr": max(default_lr(name) for name in METHOD_NAMES) * MAX_LR_MULTIPLIER,
    "train.weight_decay": MAX_DECAY,
    "train.max_grad_norm": MAX_GRAD_NORM,
    "train.eval_every": _steps,
    "train.save_every": _steps,
    "train.keep_checkpoints": MAX_CHECKPOINTS,
    "train.early_stopping_patience": _steps,
    "train.overfitting_patience": _steps,
    "train.log_every": _steps,
    "train.threads": lambda s: s.max_job_threads,
    "data.max_length": _length,
    "lora.r": _rank,
    "lora.rank_pattern.*": _rank,
    "lora.alpha": MAX_SCALE,
    "lora.alpha_pattern.*": MAX_SCALE,
    "adalora.init_r": _rank,
    "prompt.virtual_tokens": _length,
    "prompt.encoder_hidden_size": MAX_HIDDEN,
    "prompt.adapter_layers": MAX_LAYERS,
    "freeze.top_layers": MAX_LAYERS,
    "freeze.group_layers": MAX_LAYERS,
    "freeze.unfreeze_every": _steps,
    "preference.beta": MAX_SCALE,
    "preference.simpo_gamma": MAX_SCALE,
    "preference.orpo_lambda": MAX_SCALE,
    "preference.kto_desirable_weight": MAX_SCALE,
    "preference.kto_undesirable_weight": MAX_SCALE,
}


# Sections only some jobs read. In the others a default may stay above a ceiling the operator set
# lower (adalora.init_r 12 with TUNERY_MAX_JOB_LORA_RANK=4 on a LoRA job): it never reaches training.
USED_WHEN: dict[str, Callable[[dict[str, Any]], bool]] = {
    "adalora": lambda config: config.get("method") == "adalora",
    "prompt": lambda config: method_spec(config.get("method", "lora")).prompt_based,
    "freeze": lambda config: config.get("method") in ("freeze", "progressive"),
    "preference": lambda config: config.get("task") == "preference",
}


def ceiling(path: str, settings: Settings) -> float:
    most = CEILINGS[path]
    return most(settings) if callable(most) else most


def ceiling_for(path: str, config: dict[str, Any], settings: Settings) -> float:
    """The path's ceiling; in a section this job does not read, at least the schema's default."""
    most = ceiling(path, settings)
    used = USED_WHEN.get(path.split(".")[0], lambda _: True)(config)
    default = schema_default(path)
    return most if used or not is_number(default) else max(most, default)


def schema_default(path: str) -> Any:
    """The config schema's default of a `section.key` path (None for dict values and list items)."""
    model: Any = TuneryConfig
    default = None
    for part in path.split("."):
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        field = model.model_fields.get(part) if is_model else None
        if field is None:
            return None
        model, default = field.annotation, field.default
    return default


def check_config(config: dict[str, Any], settings: Settings) -> None:
    """Refuse a resolved config (a dict) holding a number over this server's ceiling."""
    for path in CEILINGS:
        most = ceiling_for(path, config, settings)
        for named, value in values_at(config, path.split(".")):
            if is_number(value) and not (value <= most):  # `not <=` also catches NaN
                raise ApiError(
                    400, f"tunery.{named} is {value}; this server allows at most {most:g}",
                    code="over_server_limit", param=f"tunery.{named}",
                )  # fmt: skip


def values_at(node: Any, parts: list[str], named: str = "") -> Iterator[tuple[str, Any]]:
    """(the concrete dotted name, value) of every value a table path reaches in a config dict."""
    if not parts:
        yield named, node
        return
    head, rest = parts[0], parts[1:]
    items = head.endswith("[]")
    key = head.removesuffix("[]")
    if key == "*":
        children = list(node.items()) if isinstance(node, dict) else []
    else:
        children = [(key, node.get(key))] if isinstance(node, dict) else []
    for name, child in children:
        here = f"{named}.{name}" if named else str(name)
        if items:
            for index, item in enumerate(child if isinstance(child, list) else []):
                yield from values_at(item, rest, f"{here}[{index}]")
        else:
            yield from values_at(child, rest, here)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class NumericKey:
    path: str  # as CEILINGS names it
    schema_most: float | None  # the schema's own upper bound (le, lt, or the largest Literal); None: none


def numeric_keys(model: type[BaseModel] = TuneryConfig, prefix: str = "") -> list[NumericKey]:
    """Every number a config can hold, found by walking the schema's models."""
    found: list[NumericKey] = []
    for name, field in model.model_fields.items():
        found += _numbers_in(field.annotation, [field], f"{prefix}{name}")
    return found


def _numbers_in(annotation: Any, bounds: list[Any], path: str) -> list[NumericKey]:
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        return _numbers_in(inner, [*bounds, *metadata], path)
    if origin in (Union, types.UnionType):
        return [k for member in get_args(annotation) for k in _numbers_in(member, bounds, path)]
    if origin is Literal:
        numbers = [v for v in get_args(annotation) if is_number(v)]
        return [NumericKey(path, max(numbers))] if numbers else []
    if origin is dict:
        return _numbers_in(get_args(annotation)[1], [], f"{path}.*")
    if origin in (list, tuple, set):
        return [k for member in get_args(annotation) for k in _numbers_in(member, [], f"{path}[]")]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return numeric_keys(annotation, f"{path}.")
    if annotation in (int, float):
        return [NumericKey(path, _upper_bound(bounds))]
    return []


def _upper_bound(bounds: list[Any]) -> float | None:
    """The `le`/`lt` among a field's constraints (pydantic keeps them as annotated_types objects)."""
    constraints = [c for b in bounds for c in (b.metadata if isinstance(b, FieldInfo) else [b])]
    found: list[float] = [c.le for c in constraints if isinstance(c, annotated_types.Le)]  # type: ignore[misc]
    found += [c.lt for c in constraints if isinstance(c, annotated_types.Lt)]  # type: ignore[misc]
    return min(found) if found else None
