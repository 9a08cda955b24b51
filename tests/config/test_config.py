"""The config: one schema for YAML, --set overrides and the Python API; mistakes named with a fix."""

from __future__ import annotations

import pytest

from tunery.config import ConfigError, load_config


def test_overrides_parse_values_as_yaml_and_reach_nested_keys(tmp_path):
    cfg = load_config(
        {"data": {"train": "t.jsonl"}},
        ["lora.r=16", "train.epochs=2.5", "lora.target_modules=[q_proj, v_proj]"],
    )
    assert cfg.lora.r == 16
    assert cfg.train.epochs == 2.5
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]


def test_a_model_may_be_given_as_a_plain_name():
    assert load_config({"model": "my/model", "data": {"train": "t"}}).model.name == "my/model"


def test_data_paths_in_a_config_file_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.jsonl").write_text("{}\n")
    config = tmp_path / "sub" / "c.yaml"
    config.write_text("data:\n  train: train.jsonl\n")
    assert load_config(config).data.train == str(tmp_path / "sub" / "train.jsonl")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.bogus=1"], "unknown key 'train.bogus'; valid keys: epochs, max_steps, batch_size"),
        (["train.lerning_rate=1"], "unknown key 'train.lerning_rate'; did you mean 'train.lr'?"),
        (["lora.lora_alpha=1"], "unknown key 'lora.lora_alpha'; did you mean 'lora.alpha'?"),
        (["train.epoch=1"], "unknown key 'train.epoch'; did you mean 'train.epochs'?"),
        (["lora.r=0"], "'lora.r': Input should be greater than or equal to 1 (got 0)"),
        (
            ["train.scheduler=exponential"],
            "'train.scheduler': Input should be 'linear', 'cosine' or 'constant'",
        ),
        (["lora"], "override 'lora' must look like key=value, e.g. lora.r=16"),
        (["lora.r.x=1"], "override 'lora.r.x=1': 'r' is a value, not a section"),
    ],
)
def test_mistakes_name_the_key_and_what_to_do(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config({"data": {"train": "t.jsonl"}, "lora": {"r": 8}}, overrides)
    assert message in str(err.value)


def test_missing_training_data_is_named():
    with pytest.raises(ConfigError, match="missing key 'data'"):
        load_config({})


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="the config must be a mapping of sections"):
        load_config(bad)
