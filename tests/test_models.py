"""Model sources and hardware choices."""

from __future__ import annotations

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
