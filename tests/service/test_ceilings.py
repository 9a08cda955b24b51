"""The server's ceilings (service/domain/ceilings.py): every numeric key of the config schema has one,
found by walking the schema, so a key added later without a ceiling fails here."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from tunery.service.domain.ceilings import CEILINGS, check_config, numeric_keys, values_at
from tunery.service.errors import ApiError
from tunery.settings import Settings


def test_every_numeric_config_key_has_a_ceiling():
    unbounded = [key.path for key in numeric_keys() if key.schema_most is None and key.path not in CEILINGS]
    assert unbounded == [], (
        f"numeric config keys without a server ceiling (add them to CEILINGS): {unbounded}"
    )


def test_every_ceiling_names_a_numeric_config_key():
    keys = {key.path for key in numeric_keys()}
    assert sorted(set(CEILINGS) - keys) == []


def test_the_walk_finds_numbers_in_sections_dicts_lists_and_unions():
    class Inner(BaseModel):
        sizes: list[int] = []
        bounded: float = Field(0.5, lt=1.0)

    class Outer(BaseModel):
        inner: Inner = Inner()
        pattern: dict[str, int] = {}
        either: Annotated[int, Field(ge=1, le=9)] | Literal["auto"] = "auto"
        choice: Literal[4, 8] = 4
        flag: bool = False
        name: str = ""

    found = {key.path: key.schema_most for key in numeric_keys(Outer)}
    assert found == {"inner.sizes[]": None, "inner.bounded": 1.0, "pattern.*": None, "either": 9, "choice": 8}


def test_values_are_found_by_their_concrete_names():
    config = {"lora": {"rank_pattern": {"q_proj": 4, "k_proj": 8}}, "x": {"ys": [1, 2]}}
    assert list(values_at(config, ["lora", "rank_pattern", "*"])) == [
        ("lora.rank_pattern.q_proj", 4),
        ("lora.rank_pattern.k_proj", 8),
    ]
    assert list(values_at(config, ["x", "ys[]"])) == [("x.ys[0]", 1), ("x.ys[1]", 2)]


@pytest.mark.parametrize("value", [2**70, 1e300, float("nan"), float("inf")])
def test_a_value_over_a_ceiling_is_refused_naming_it(value):
    settings = Settings(data_dir="/nonexistent", max_job_lora_rank=64)
    with pytest.raises(ApiError) as refused:
        check_config({"lora": {"r": 8, "rank_pattern": {"q_proj": value}}}, settings)
    assert refused.value.param == "tunery.lora.rank_pattern.q_proj" and refused.value.status == 400
    check_config({"lora": {"r": 64, "rank_pattern": {"q_proj": 64}}, "train": {"grad_accum": 1024}}, settings)


def test_a_default_above_a_lowered_ceiling_passes_only_where_the_job_does_not_read_it():
    settings = Settings(data_dir="/nonexistent", max_job_lora_rank=4)
    lora_job = {"method": "lora", "task": "sft", "lora": {"r": 4}, "adalora": {"init_r": 12}}
    check_config(lora_job, settings)  # adalora.init_r keeps its default: a LoRA job never reads it
    with pytest.raises(ApiError) as refused:
        check_config(lora_job | {"method": "adalora"}, settings)
    assert refused.value.param == "tunery.adalora.init_r"
    with pytest.raises(ApiError):
        check_config(lora_job | {"adalora": {"init_r": 2**70}}, settings)  # no default: refused anyway
