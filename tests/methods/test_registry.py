"""One fact, one place: the registry lists every method and task, and everything else is derived.

Each test fails if a second copy comes back (a method module the registry does not list, a
config literal of its own, a packing rule of its own, a second default learning rate).
"""

from __future__ import annotations

import json
import re
from importlib import import_module
from pathlib import Path
from typing import get_args

import pytest

import tunery
from tunery.config import DEFAULT_LR, LR_FAMILIES, TrainConfig, TuneryConfig, load_config
from tunery.config.registry import (
    METHOD_NAMES,
    METHOD_SPECS,
    TASK_NAMES,
    batching_for,
    method_spec,
    packing_for,
)
from tunery.methods import Method, get_method, run_files
from tunery.tasks import get_task

SOURCE = Path(tunery.__file__).parent


def modules_defining(package: str, attribute: str) -> dict[str, object]:
    """Module name -> its `attribute`, for every module of the package that defines one."""
    found = {}
    for path in sorted((SOURCE / package).glob("*.py")):
        module = import_module(f"tunery.{package}.{path.stem}")
        if hasattr(module, attribute):
            found[path.stem] = getattr(module, attribute)
    return found


def test_every_method_module_is_in_the_registry_and_every_registered_method_has_its_module():
    defined = modules_defining("methods", "METHOD")
    assert set(defined) == set(METHOD_NAMES)
    for name, method in defined.items():
        assert isinstance(method, Method) and method.spec is method_spec(name)
        assert get_method(name) is method


def test_every_task_module_is_in_the_registry_and_the_other_way_round():
    defined = modules_defining("tasks", "SPEC")
    assert set(defined) == set(TASK_NAMES)
    for name, spec in defined.items():
        assert spec.name == name and get_task(name).SPEC is spec


def test_the_config_accepts_exactly_the_registered_names():
    assert get_args(TuneryConfig.model_fields["method"].annotation) == METHOD_NAMES
    assert get_args(TuneryConfig.model_fields["task"].annotation) == TASK_NAMES


def test_no_second_list_of_method_or_task_names_in_the_source():
    """A tuple or Literal naming three methods (or the three tasks) outside the registry is a copy."""
    methods = "|".join(METHOD_NAMES)
    listing = re.compile(rf'"({methods})",\s*"({methods})",\s*"({methods})"')
    tasks = re.compile(r'"sft",\s*"classification",\s*"seq2seq"')
    copies = [
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if path.name != "registry.py" and (listing.search(text := path.read_text()) or tasks.search(text))
    ]
    assert not copies


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_one_packing_rule_for_auto_and_for_the_validator(task, method):
    base = {"data": {"train": "x"}, "task": task, "method": method}
    if method_spec(method).decoder_only and task != "sft":
        return  # refused for another reason
    rule = packing_for(task, method)
    assert load_config(base).batching == ("packed" if rule == "default" else "grouped")
    assert load_config(base).batching == batching_for("auto", task, method)
    packed = {**base, "train": {"batching": "packed"}}
    if rule == "never":
        with pytest.raises(ValueError, match="train.batching=packed works only"):
            load_config(packed)
    else:
        assert load_config(packed).batching == "packed"


def test_llama_adapter_packs_when_asked_but_not_by_default():
    config = {"data": {"train": "x"}, "method": "llama_adapter"}
    assert load_config(config).batching == "grouped"
    assert load_config({**config, "train": {"batching": "packed"}}).batching == "packed"


def test_one_place_for_the_default_learning_rates():
    assert TrainConfig().lr == "auto"  # training/auto.py's range test; the families' fallbacks live in config
    assert LR_FAMILIES["lora"][0] == DEFAULT_LR
    copies = [
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if re.search(r"(?<![\w.])(2e-4|2\.0e-4|0\.0002|1e-3|1\.0e-3|0\.001)(?![\w])", path.read_text())
    ]
    assert copies == ["config/__init__.py"]  # LR_FAMILIES: the old 2e-4 in a comment, the LoRA default 1e-3


def test_run_files_follow_the_own_weights_capability():
    for spec in METHOD_SPECS:
        expected = (
            "adapter/trainable.safetensors" if spec.own_weights else "adapter/adapter_model.safetensors"
        )
        assert expected in run_files(spec.name)


def test_grouped_serving_takes_only_the_methods_the_registry_marks_groupable(tmp_path):
    from tunery.serve.grouped_lora import WEIGHTS, groupable

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / WEIGHTS).write_bytes(b"")
    assert (
        {name for name in METHOD_NAMES if groupable(tmp_path, name)}
        == {spec.name for spec in METHOD_SPECS if spec.groupable}
        == {"lora", "qlora"}
    )


def test_tunery_methods_and_the_api_list_the_registry(monkeypatch):
    from typer.testing import CliRunner

    from tunery.cli import app
    from tunery.service.api.routes.runs import list_methods

    monkeypatch.setenv("COLUMNS", "300")
    shown = CliRunner().invoke(app, ["methods"]).output
    rows = [line.split()[1] for line in shown.splitlines() if line.startswith("│")]
    assert rows == list(METHOD_NAMES)
    assert [(m.name, m.summary, m.mergeable) for m in list_methods(None)] == [
        (spec.name, spec.summary, spec.mergeable) for spec in METHOD_SPECS
    ]


def test_a_method_gets_its_own_options_not_the_run_config():
    cfg = load_config({"data": {"train": "x"}, "method": "lora", "lora": {"r": 3}})
    assert get_method("lora").options(cfg) is cfg.lora
    assert get_method("dora").options(cfg).use_dora and get_method("dora").options(cfg).r == 3
    assert get_method("full").options(cfg) is None
