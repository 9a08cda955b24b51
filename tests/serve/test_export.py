"""`tunery export` and `tunery push`: the merged model answers as the served adapter does."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunery.serve.engine import Engine, Finish, Sampling, Target, Token


def tunery_cli(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNERY_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tunery", *args], env=env, capture_output=True, text=True, timeout=120
    )


def served_answer(run, prompt: str) -> tuple[list[int], str]:
    engine = Engine().start()
    try:
        target = Target.for_run(run)
        ids = engine.encode_chat(target, [{"role": "user", "content": prompt}])
        events = list(engine.submit(target, ids, Sampling(max_tokens=10, temperature=0)).events())
        text = "".join(e.text for e in events if isinstance(e, Token))
        assert isinstance(events[-1], Finish)
        return ids, text
    finally:
        engine.stop()


def test_the_merged_export_answers_like_the_served_adapter(two_runs, tmp_path, tunery_home):
    run = two_runs[0]
    made = tunery_cli(
        "export",
        str(run),
        "--merged",
        str(tmp_path / "merged"),
        "--adapter",
        str(tmp_path / "ad"),
        home=tunery_home,
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "ad" / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    ids, served = served_answer(run, "item 3 quantity 2")
    with torch.no_grad():
        output = model.generate(
            torch.tensor([ids]), max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    plain = tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
    assert served == plain and served


def test_push_dry_run_lists_the_files_and_offline_push_fails_clearly(two_runs, tunery_home):
    dry = tunery_cli("push", str(two_runs[0]), "me/demo", "--dry-run", home=tunery_home)
    assert dry.returncode == 0, dry.stderr
    assert "adapter_model.safetensors" in dry.stdout and "README.md" in dry.stdout
    offline = tunery_cli("push", str(two_runs[0]), "me/demo", home=tunery_home)
    assert (
        offline.returncode == 2 and "could not push" in offline.stderr and "Traceback" not in offline.stderr
    )
