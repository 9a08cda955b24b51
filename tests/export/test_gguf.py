"""GGUF export for real: the file loads back in transformers (which de-quantises GGUF) and answers
like the merged safetensors model; what cannot be written right is refused before a byte is written."""

from __future__ import annotations

import pytest
import torch

from tests.cli.test_cli import tunery as tunery_cli
from tests.conftest import CHATML, build_tiny_llama, build_tiny_tokenizer
from tunery.gguf_export import QUANTS, UnsupportedForGguf, write_gguf

PROMPTS = [
    "item 3 quantity 4",
    "Extract the order as JSON: name, item, quantity.",
    "hello world 0 1 2",
    "Paris",
]


@pytest.fixture(scope="module")
def merged_dir(finished_run, tmp_path_factory):
    from tunery.inference import merge_run

    return merge_run(finished_run.path, tmp_path_factory.mktemp("merged") / "model")


def load_gguf(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def logits(model, tokenizer, text):
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def wide_llama(tokenizer, **overrides):
    """A tiny llama whose rows (64) fill two q8_0 blocks, so quantisation really happens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    config.update(num_key_value_heads=2, max_position_embeddings=128, vocab_size=len(tokenizer), **overrides)
    return LlamaForCausalLM(LlamaConfig(**config)).eval()


def test_cli_writes_an_f32_gguf_whose_logits_equal_the_merged_model(finished_run, merged_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out" / "model.gguf"
    done = tunery_cli("export", str(finished_run.path), "--gguf", str(out), "--quant", "f32", "--ollama")
    assert done.returncode == 0, done.stderr
    assert "llama, f32" in done.stdout
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    merged_tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    exported, tokenizer = load_gguf(out)
    for text in PROMPTS:
        torch.testing.assert_close(
            logits(exported, tokenizer, text), logits(merged, merged_tokenizer, text), atol=1e-4, rtol=0
        )
    modelfile = (out.parent / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf\n")
    assert "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile


def test_f16_agrees_on_the_top_token_of_every_prompt(tiny_tokenizer, tmp_path, capsys):
    model = build_tiny_llama(len(tiny_tokenizer)).eval()
    out = write_gguf(model, tiny_tokenizer, tmp_path / "m.gguf", "f16").path
    exported, tokenizer = load_gguf(out)
    worst = 0.0
    for text in PROMPTS:
        want, got = logits(model, tiny_tokenizer, text), logits(exported, tokenizer, text)
        assert torch.equal(want.argmax(-1), got.argmax(-1)), text
        worst = max(worst, (want - got).abs().max().item())
    assert worst < 1e-2
    with capsys.disabled():
        print(f"\nf16 GGUF vs safetensors: max abs logit difference {worst:.2e} over {len(PROMPTS)} prompts")


@pytest.mark.parametrize("quant", sorted(set(QUANTS) - {"f32", "f16"}))
def test_quantised_files_hold_real_blocks_and_load_back_close(tiny_tokenizer, tmp_path, quant):
    """Random weights give near-tied logits, so greedy equality for q8_0 is checked on SmolLM2 (tests/slow)."""
    model = wide_llama(tiny_tokenizer)
    result = write_gguf(model, tiny_tokenizer, tmp_path / f"{quant}.gguf", quant)
    assert not result.fallbacks  # every matrix really is quantised
    exported, tokenizer = load_gguf(result.path)
    bound = {"q8_0": 0.03, "q5_1": 0.2, "q5_0": 0.2, "q4_1": 0.35, "q4_0": 0.35}[
        quant
    ]  # measured: 0.011, 0.09, 0.19
    for text in PROMPTS:
        want, got = logits(model, tiny_tokenizer, text), logits(exported, tokenizer, text)
        assert 0 < ((want - got).norm() / want.norm()).item() < bound, text


def test_the_tokenizer_and_chat_template_round_trip(tiny_tokenizer, tmp_path):
    model = build_tiny_llama(len(tiny_tokenizer))
    _, tokenizer = load_gguf(write_gguf(model, tiny_tokenizer, tmp_path / "m.gguf", "f16").path)
    chat = [{"role": "user", "content": "Ada wants 3 apples"}, {"role": "assistant", "content": '{"q": 3}'}]
    rendered = tiny_tokenizer.apply_chat_template(chat, tokenize=False)
    assert tokenizer.apply_chat_template(chat, tokenize=False) == rendered
    for text in [*PROMPTS, rendered, "  odd   spacing\n\ttabs", "émoji 🦊 ü"]:
        ids = tiny_tokenizer(text)["input_ids"]
        assert tokenizer(text)["input_ids"] == ids, text
        assert tokenizer.decode(ids) == tiny_tokenizer.decode(ids)
    assert (tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        "<|endoftext|>",
    )
    assert tokenizer.chat_template == CHATML


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_qwen2_and_mistral_round_trip_at_f32(tiny_tokenizer, tmp_path, family):
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_class, model_class = {
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }[family]
    torch.manual_seed(2)
    config = config_class(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False,
    )  # fmt: skip
    model = model_class(config).eval()
    if family == "qwen2":  # qwen2 has q/k/v biases: make them count
        for layer in model.model.layers:
            torch.nn.init.normal_(layer.self_attn.q_proj.bias)
            torch.nn.init.normal_(layer.self_attn.k_proj.bias)
    exported, tokenizer = load_gguf(write_gguf(model, tiny_tokenizer, tmp_path / "m.gguf", "f32").path)
    for text in PROMPTS:
        torch.testing.assert_close(
            logits(exported, tokenizer, text), logits(model, tiny_tokenizer, text), atol=1e-4, rtol=0
        )


def test_an_unsupported_architecture_is_refused_with_the_list_and_nothing_written(tiny_tokenizer, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(
        UnsupportedForGguf,
        match="LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM; this model is GPT2LMHeadModel",
    ) as err:
        write_gguf(model, tiny_tokenizer, tmp_path / "m.gguf", "f16")
    assert err.value.code == "gguf_unsupported"
    assert list(tmp_path.iterdir()) == []


def sentencepiece_style_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(["hello world", "the quick brown fox"] * 5, trainers.BpeTrainer(vocab_size=60))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>")


def test_a_sentencepiece_style_tokenizer_is_refused(tmp_path):
    tokenizer = sentencepiece_style_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    with pytest.raises(
        UnsupportedForGguf, match="byte-level BPE vocabularies .SmolLM2, Llama 3, Qwen2. only"
    ):
        write_gguf(model, tokenizer, tmp_path / "m.gguf", "f16")
    assert list(tmp_path.iterdir()) == []


def test_a_pre_tokenizer_llama_cpp_does_not_know_is_refused(tmp_path):
    from tokenizers import pre_tokenizers

    tokenizer = build_tiny_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    with pytest.raises(
        UnsupportedForGguf, match=r"pre-tokenizer \(Whitespace \+ ByteLevel\) matches no split rule"
    ):
        write_gguf(build_tiny_llama(len(tokenizer)), tokenizer, tmp_path / "m.gguf", "f16")


def test_a_tokenizer_larger_than_the_embedding_is_refused(tiny_tokenizer, tmp_path):
    with pytest.raises(UnsupportedForGguf, match="only 100 rows"):
        write_gguf(build_tiny_llama(100), tiny_tokenizer, tmp_path / "m.gguf", "f16")


def test_an_embedding_larger_than_the_tokenizer_gets_padding_tokens(tiny_tokenizer, tmp_path):
    from gguf import GGUFReader

    model = build_tiny_llama(len(tiny_tokenizer) + 3)
    path = write_gguf(model, tiny_tokenizer, tmp_path / "m.gguf", "f16").path
    tokens = GGUFReader(path).fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == len(tiny_tokenizer) + 3
    assert bytes(tokens.parts[tokens.data[-1]]).decode() == f"[PAD{len(tiny_tokenizer) + 2}]"


@pytest.mark.parametrize(
    ("name", "quant", "message"),
    [
        ("m.gguf", "q3_k", "--quant 'q3_k' is not one of f32, f16, q8_0"),
        ("m.bin", "f16", "with a .gguf suffix"),
    ],
)
def test_bad_targets_are_refused(tiny_tokenizer, tmp_path, name, quant, message):
    with pytest.raises(UnsupportedForGguf, match=message):
        write_gguf(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, tmp_path / name, quant)


def test_an_existing_file_is_never_overwritten(tiny_tokenizer, tmp_path):
    (tmp_path / "m.gguf").write_text("mine")
    with pytest.raises(FileExistsError, match="exists; choose a new file name"):
        write_gguf(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, tmp_path / "m.gguf", "f16")
    assert (tmp_path / "m.gguf").read_text() == "mine"


def test_a_failure_mid_write_leaves_no_file(tiny_tokenizer, tmp_path, monkeypatch):
    import gguf

    def broken(self, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        write_gguf(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, tmp_path / "m.gguf", "f16")
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_bad_quant_before_merging(finished_run, tmp_path):
    done = tunery_cli("export", str(finished_run.path), "--gguf", str(tmp_path / "m.gguf"), "--quant", "q2")
    assert done.returncode == 2
    assert "error: --quant 'q2' is not one of f32, f16, q8_0, q5_1, q5_0, q4_1, q4_0" in done.stderr
    assert not (tmp_path / "m.gguf").exists()
