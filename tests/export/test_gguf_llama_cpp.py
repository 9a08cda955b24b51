"""The exported GGUF in llama.cpp itself (through llama-cpp-python): it loads, applies the embedded
chat template, and its logits equal the merged model's. Skipped where llama-cpp-python is not
installed (`make llamacpp` builds it once; `make test` installs the kept wheel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip(
    "llama_cpp",
    reason="llama-cpp-python is not installed: `make llamacpp` builds it once from its PyPI sdist",
)

PROMPT = "item 3 quantity 4"


@pytest.fixture(scope="module")
def merged(finished_run, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunery.inference import merge_run

    folder = merge_run(finished_run.path, tmp_path_factory.mktemp("merged-llama") / "model")
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def load(path, **options):
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False, seed=0, **options)


@pytest.mark.parametrize(("quant", "tolerance"), [("f32", 1e-3), ("f16", 5e-2)])
def test_llama_cpp_tokenises_like_transformers_and_its_logits_match(
    finished_run, merged, tmp_path, quant, tolerance
):
    from tunery.gguf_export import export_gguf

    model, tokenizer = merged
    path = export_gguf(finished_run.path, tmp_path / f"tiny-{quant}.gguf", quant).path
    llm = load(path, logits_all=True)
    ids = tokenizer(PROMPT)["input_ids"]
    assert llm.tokenize(PROMPT.encode(), add_bos=False, special=True) == ids
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)])
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    difference = float(np.abs(theirs - ours).max())
    print(f"{quant}: max |llama.cpp - transformers| logit = {difference:.2e}")
    assert difference < tolerance


def test_llama_cpp_finds_the_chat_template_and_end_of_turn_in_the_file(finished_run, tmp_path):
    from tunery.gguf_export import export_gguf

    llm = load(export_gguf(finished_run.path, tmp_path / "tiny.gguf", "f16").path)
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
    eos = llm.token_eos()
    assert llm.detokenize([eos], special=True) == b"<|im_end|>"
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
    )
    assert reply["choices"][0]["finish_reason"] in {"stop", "length"}
