"""Every method through the same checks (the method table), on a tiny random llama.

Each case trains 3 steps through the real recipe, then: the loss is finite, frozen
parameters are bit-identical, trained ones changed, the saved run reloads to the same
outputs, and a mergeable run merges to the same logits while the others refuse clearly.
"""

from __future__ import annotations

import math

import pytest
import torch

import tunery
import tunery.training.recipe as recipe
from tests.conftest import chat_rows, write_jsonl
from tunery.inference import CannotMerge, load_run_model, merge_run
from tunery.methods import METHODS, apply_method, get_method, run_files

# (case id, config overrides): every method once, and LoRA's options.
CASES = [
    ("lora", {"method": "lora"}),
    ("lora-rslora-dora", {"method": "lora", "lora": {"use_rslora": True, "use_dora": True}}),
    ("dora", {"method": "dora"}),
    ("lora-gaussian", {"method": "lora", "lora": {"init": "gaussian"}}),
    ("lora-pissa", {"method": "lora", "lora": {"init": "pissa"}}),
    ("lora-olora", {"method": "lora", "lora": {"init": "olora"}}),
    (
        "lora-patterns",
        {"method": "lora", "lora": {"rank_pattern": {"q_proj": 2}, "alpha_pattern": {"q_proj": 4}}},
    ),
    ("lora-modules-to-save", {"method": "lora", "lora": {"modules_to_save": ["norm"]}}),
    # Warm-up over the 3 steps: rank pruning would zero the very singular values under test.
    ("adalora", {"method": "adalora", "adalora": {"warmup_ratio": 0.9}}),
    ("ia3", {"method": "ia3"}),
    ("loha", {"method": "loha"}),
    ("lokr", {"method": "lokr"}),
    ("oft", {"method": "oft", "lora": {"r": 4}}),
    ("prefix", {"method": "prefix"}),
    ("prompt", {"method": "prompt", "prompt": {"virtual_tokens": 4, "init_text": "Answer as JSON"}}),
    ("ptuning", {"method": "ptuning", "prompt": {"virtual_tokens": 4, "encoder_hidden_size": 16}}),
    ("llama_adapter", {"method": "llama_adapter", "prompt": {"virtual_tokens": 4, "adapter_layers": 1}}),
    ("full", {"method": "full"}),
    ("freeze", {"method": "freeze", "freeze": {"top_layers": 1, "modules": ["model.norm"]}}),
    ("progressive", {"method": "progressive", "freeze": {"unfreeze_every": 2, "lr_decay": 0.5}}),
]
# PiSSA/OLoRA move the weights' principal part into the adapter: the base changes on purpose.
BASE_MUTATED = {"lora-pissa", "lora-olora"}


def test_the_table_covers_every_registered_method():
    assert {overrides["method"] for _, overrides in CASES} | {"qlora"} == set(METHODS)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("method-data")
    return write_jsonl(folder / "train.jsonl", chat_rows(12)), write_jsonl(
        folder / "valid.jsonl", chat_rows(4)
    )


def method_config(model_dir, files, out, overrides: dict) -> dict:
    config = {
        "model": str(model_dir),
        "data": {"train": str(files[0]), "validation": str(files[1]), "max_length": 64},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"batch_size": 4, "lr": 5e-3, "seed": 7, "warmup_ratio": 0.0, "max_steps": 3},
        "output_dir": str(out),
        "run_name": "run",
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


class Spy:
    """Keeps the model the recipe trains and a copy of its weights from before training."""

    def __init__(self):
        self.model, self.before = None, {}

    def __call__(self, name, model, config, total_steps):
        self.model = apply_method(name, model, config, total_steps)
        self.before = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        return self.model


def sample_ids(tokenizer) -> torch.Tensor:
    return tokenizer(["item 3 quantity 4", "item 1 quantity 2"], return_tensors="pt")["input_ids"]


@pytest.mark.parametrize(("case", "overrides"), CASES, ids=[case for case, _ in CASES])
def test_method(case, overrides, tiny_model_dir, data_files, tmp_path, monkeypatch):
    spy = Spy()
    monkeypatch.setattr(recipe, "apply_method", spy)
    run = tunery.train(method_config(tiny_model_dir, data_files, tmp_path, overrides), quiet=True)

    losses = [row["loss"] for row in run.history() if "loss" in row]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    missing = [name for name in run_files(overrides["method"]) if not (run.path / name).is_file()]
    assert not missing, f"run is missing {missing}"

    after = dict(spy.model.named_parameters())
    trained = {n for n, p in after.items() if p.requires_grad}
    assert trained, "nothing trained"
    frozen = set(after) - trained
    if case not in BASE_MUTATED:
        unchanged = [n for n in frozen if not torch.equal(spy.before[n], after[n].detach())]
        assert not unchanged, f"frozen parameters changed: {unchanged[:3]}"
    stuck = [n for n in trained if torch.equal(spy.before[n], after[n].detach())]
    assert not stuck, f"trainable parameters did not change: {stuck[:3]}"

    loaded, tokenizer = load_run_model(run.path, device="cpu")
    ids = sample_ids(tokenizer)
    spy.model.eval()
    with torch.no_grad():
        expected = spy.model(input_ids=ids).logits
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected, rtol=1e-5, atol=1e-5)

    if get_method(overrides["method"]).spec.mergeable:
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(merge_run(run.path, tmp_path / "merged")).eval()
        with torch.no_grad():
            torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-4)
    else:
        with pytest.raises(CannotMerge, match=f"method={overrides['method']} .* nothing to fold"):
            merge_run(run.path, tmp_path / "merged")
        assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_tunery_merge_refuses_prompt_methods_with_one_clear_line(
    method, tiny_model_dir, data_files, tmp_path, monkeypatch, capsys
):
    from tunery.cli import main

    config = method_config(
        tiny_model_dir, data_files, tmp_path, {"method": method, "train": {"max_steps": 1}}
    )
    run = tunery.train(config, quiet=True)
    monkeypatch.setattr("sys.argv", ["tunery", "merge", str(run.path), str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert f"method={method} adds learned tokens" in capsys.readouterr().err
