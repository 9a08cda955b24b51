"""train.lr, train.epochs and train.batch_size take a number or `auto` (the default); each method
belongs to one learning-rate family, whose range the range test clamps to (docs/auto.md)."""

from __future__ import annotations

import pytest

from tunery.config import (
    DEFAULT_LR,
    LR_FAMILIES,
    ConfigError,
    TrainConfig,
    default_lr,
    load_config,
    lr_family,
)
from tunery.config.registry import METHOD_SPECS


def test_auto_is_the_default_and_a_number_turns_it_off():
    assert (TrainConfig().lr, TrainConfig().epochs, TrainConfig().batch_size) == ("auto", "auto", "auto")
    cfg = load_config({"data": {"train": "t"}}, ["train.lr=1e-3", "train.epochs=2", "train.batch_size=4"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.batch_size) == (1e-3, 2.0, 4)
    assert load_config({"data": {"train": "t"}, "train": {"lr": "auto"}}).train.lr == "auto"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-0.001", "'train.lr': Input should be greater than 0 (got -0.001); or auto"),
        ("train.lr=fast", "'train.lr': Input should be a valid number, unable to parse string as a number"),
        (
            "train.batch_size=0",
            "'train.batch_size': Input should be greater than or equal to 1 (got 0); or auto",
        ),
        ("train.epochs=0", "'train.epochs': Input should be greater than 0 (got 0); or auto"),
    ],
)
def test_a_bad_value_gets_one_line_that_offers_auto(override, message):
    with pytest.raises(ConfigError) as err:
        load_config({"data": {"train": "t"}}, [override])
    assert message in str(err.value)
    assert "literal" not in str(err.value) and str(err.value).count("\n") == 1


def test_every_method_has_one_family_with_a_default_inside_its_range():
    expected = {"lora": "lora", "dora": "lora", "qlora": "lora", "adalora": "lora", "loha": "lora",
                "lokr": "lora", "oft": "lora", "ia3": "ia3", "prefix": "prompt", "prompt": "prompt",
                "ptuning": "prompt", "llama_adapter": "prompt", "full": "full", "freeze": "full",
                "progressive": "full"}  # fmt: skip
    assert {spec.name: lr_family(spec.name) for spec in METHOD_SPECS} == expected
    for default, low, high in LR_FAMILIES.values():
        assert low < default < high
    assert default_lr("lora") == DEFAULT_LR == 1e-3
