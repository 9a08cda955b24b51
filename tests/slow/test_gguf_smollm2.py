"""GGUF export of a real SmolLM2 run: transformers and llama.cpp itself answer the demo prompts as tunery does.

llama.cpp runs through `llama-cpp-python`, built once from its PyPI source distribution by
`make llamacpp` (cmake and a C++ compiler, ~15 min on 2 idle cores) and installed by `make test`
from the kept wheel. Where it is not installed the llama.cpp test is skipped and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"
DEMO_PROMPT = [
    {"role": "system", "content": "Extract the order as compact JSON."},
    {"role": "user", "content": "Hi, this is Ines from Braga. Could I get 4 jars of honey?"},
]
MAX_TOKENS = 40


def demo_conversations(n: int = 4) -> list[list[dict]]:
    rows = (EXAMPLES / "data" / "valid.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [DEMO_PROMPT] + [json.loads(row)["messages"][:-1] for row in rows]


@pytest.fixture(scope="module")
def tunery_answers(demo_run):
    from tunery.inference import generate, load_run_model

    model, tokenizer = load_run_model(demo_run.path, device="cpu")
    return generate(model, tokenizer, demo_conversations(), max_new_tokens=MAX_TOKENS)


@pytest.fixture(scope="module")
def exported(demo_run, tmp_path_factory):
    from tunery.gguf_export import export_gguf

    folder = tmp_path_factory.mktemp("gguf-files")
    return {
        quant: export_gguf(demo_run.path, folder / f"demo-{quant}.gguf", quant).path
        for quant in ("f16", "q8_0")
    }


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_transformers_reads_the_gguf_and_answers_the_demo_prompts_alike(exported, tunery_answers, quant):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunery.inference import generate

    path = exported[quant]
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    answers = generate(model, tokenizer, demo_conversations(), max_new_tokens=MAX_TOKENS)
    assert answers == tunery_answers
    assert '"customer": "Ines"' in tunery_answers[0]  # the tuned behaviour, not the base model's


@pytest.mark.slow
def test_llama_cpp_applies_the_embedded_template_and_answers_like_tunery(exported, tunery_answers):
    llama_cpp = pytest.importorskip(
        "llama_cpp",
        reason="llama-cpp-python is not installed: `make llamacpp` builds it once from its PyPI source "
        "distribution (cmake and a C++ compiler) and `make test` then installs it",
    )
    llm = llama_cpp.Llama(model_path=str(exported["f16"]), n_ctx=512, n_threads=2, verbose=False, seed=0)
    reply = llm.create_chat_completion(messages=DEMO_PROMPT, temperature=0.0, max_tokens=MAX_TOKENS)
    assert reply["choices"][0]["message"]["content"].strip() == tunery_answers[0]
