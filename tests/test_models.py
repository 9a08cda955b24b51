"""Model sources and hardware choices."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from tunery.models import ModelNotFoundError, pick_device, pick_dtype, resolve_model


def test_a_local_directory_resolves_to_itself(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_a_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no config.json; is it a transformers model"):
        resolve_model(str(tmp_path))


def test_an_unreachable_hub_id_says_how_to_use_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("someone/not-cached-model")
    message = str(err.value)
    assert (
        "model 'someone/not-cached-model' is not a bundled alias (smollm2-135m-instruct, minilm-l6)"
        in message
    )
    assert (
        "hf download someone/not-cached-model --local-dir DIR" in message
        and "set model.name to DIR" in message
    )


def test_a_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF file .*missing.gguf does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_auto_never_picks_low_precision_on_a_cpu():
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_device("cpu") == torch.device("cpu")


def test_bf16_on_a_cpu_that_emulates_it_is_refused(monkeypatch):
    import tunery.models as models

    emulated = {"bfloat16": 0.075, "float32": 0.001}  # what an AVX2-only CPU measures: ~75x slower
    monkeypatch.setattr(models, "_matmul_seconds", lambda name: emulated[name])
    with pytest.raises(
        ValueError, match="model.dtype=bfloat16 on this CPU is emulated .* set model.dtype=auto or float32"
    ):
        pick_dtype("bfloat16", torch.device("cpu"))


def test_bf16_on_a_cpu_with_native_kernels_is_allowed(monkeypatch):
    import tunery.models as models

    native = {"bfloat16": 0.0005, "float32": 0.001}  # AMX / avx512_bf16: faster than fp32
    monkeypatch.setattr(models, "_matmul_seconds", lambda name: native[name])
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_the_matmul_probe_measures_real_kernels():
    import tunery.models as models

    assert 0 < models._matmul_seconds("float32") < 1.0


def test_requests_that_need_the_same_gguf_at_once_convert_it_once(tmp_path, monkeypatch):
    import threading
    import time

    import tunery.models as models

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    calls = []

    def slow_conversion(path, target):
        calls.append(path)
        time.sleep(0.3)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_into", slow_conversion)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(models.convert_gguf(gguf))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and (results[0] / "config.json").exists()


LOADS_EACH = 8  # 4 threads x 8 loads: without the shared lock, 2 of 2 runs left a stand-in swapped


def test_models_loaded_in_four_threads_at_once_leave_every_swapped_function_as_it_was(tiny_model_dir):
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoModelForCausalLM

    from tests.conftest import swappable_globals, swapped_since
    from tunery.models import load_causal_lm, model_construction

    path, cpu = str(tiny_model_dir), torch.device("cpu")
    load_causal_lm(path, cpu, torch.float32)  # transformers' modules imported: every place is in `before`
    before = swappable_globals()

    def load_many(thread: int) -> None:
        for _ in range(LOADS_EACH):
            if thread % 2:
                with model_construction():
                    AutoModelForCausalLM.from_pretrained(path)
            else:
                load_causal_lm(path, cpu, torch.float32)

    with ThreadPoolExecutor(4) as pool:
        failures = [f.exception() for f in [pool.submit(load_many, i) for i in range(4)] if f.exception()]
    left = swapped_since(before)
    assert failures == [] and left == []
    model, _ = load_causal_lm(path, cpu, torch.float32)  # a tied model still loads afterwards
    assert model.lm_head.weight is model.model.embed_tokens.weight


# Loading a tokenizer or a config swaps nothing: only modeling_utils.py (and PEFT's loaders) use the
# swapping context managers of transformers' initialization.py.
SWAPS_NOTHING = {"AutoConfig", "AutoTokenizer"}
BUILDERS = {"from_pretrained", "from_config"}
SRC = Path(__file__).resolve().parents[1] / "src" / "tunery"


def unguarded_builds(source: str) -> list[int]:
    """Lines that build a model outside `with model_construction():`."""
    tree = ast.parse(source)
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        and any(_names(item.context_expr, "model_construction") for item in node.items)
        for inner in ast.walk(node)
    }
    return [node.lineno for node in ast.walk(tree) if _builds_a_model(node) and id(node) not in guarded]


def _names(node: ast.AST, name: str) -> bool:
    function = node.func if isinstance(node, ast.Call) else None
    return isinstance(function, ast.Name | ast.Attribute) and name in (
        getattr(function, "id", None),
        getattr(function, "attr", None),
    )


def _builds_a_model(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    if isinstance(function, ast.Name):
        return function.id == "HFLM"  # lm-eval's model wrapper calls from_pretrained itself
    receiver = function.value if isinstance(function, ast.Attribute) else None
    return (
        isinstance(function, ast.Attribute)
        and function.attr in BUILDERS
        and not (isinstance(receiver, ast.Name) and receiver.id in SWAPS_NOTHING)
    )


def test_every_model_in_src_is_built_inside_model_construction():
    unguarded = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in unguarded_builds(path.read_text(encoding="utf-8"))
    ]
    assert unguarded == []


def test_the_guard_finds_a_build_outside_the_lock_and_trusts_one_inside():
    source = """
def load(path):
    config = AutoConfig.from_pretrained(path)
    with model_construction():
        good = AutoModelForCausalLM.from_pretrained(path)
    with torch.device("meta"):
        bad = loader.from_config(config)
    return PeftModel.from_pretrained(good, path), HFLM(pretrained=path)
"""
    assert unguarded_builds(source) == [7, 8, 8]
