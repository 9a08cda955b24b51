"""Third-party libraries stay quiet: the terminal is for tunery's own output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tunery.libraries import accelerator_devices

SAVE_A_MODEL = textwrap.dedent("""
    import sys, tempfile
    if sys.argv[1] == "quiet":
        from tunery.libraries import quiet_libraries
        quiet_libraries()
    from transformers import AutoModelForCausalLM, LlamaConfig
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=64)
    AutoModelForCausalLM.from_config(config).save_pretrained(tempfile.mkdtemp())  # accelerate imports DeepSpeed
""")


@pytest.mark.skipif(bool(accelerator_devices()), reason="DeepSpeed picks the accelerator on this machine")
def test_saving_a_model_prints_nothing_of_deepspeed_on_a_machine_without_accelerators():
    pytest.importorskip("deepspeed")
    env_without = {key: value for key, value in os.environ.items() if key != "DS_ACCELERATOR"}
    runs = {
        mode: subprocess.run(
            [sys.executable, "-c", SAVE_A_MODEL, mode],
            capture_output=True,
            text=True,
            env=env_without,
            timeout=300,
        )  # fmt: skip
        for mode in ("plain", "quiet")
    }
    assert all(run.returncode == 0 for run in runs.values()), {mode: run.stderr for mode, run in runs.items()}
    assert "Setting accelerator to CPU" in runs["plain"].stdout + runs["plain"].stderr, "the warning is gone"
    assert "DeepSpeed" not in runs["quiet"].stderr + runs["quiet"].stdout
    assert "accelerator" not in runs["quiet"].stderr + runs["quiet"].stdout
