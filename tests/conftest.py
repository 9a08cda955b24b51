"""Shared fixtures: a tiny random llama with a tiny byte-level BPE tokenizer and ChatML template.

Built from a config in well under a second, so every unit test runs real
transformers code without a download or a real checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Extract the order as JSON: name, item, quantity.",
    '{"name": "Ada", "item": "apple", "quantity": 3}',
    "What is the capital of France? Paris is the capital of France.",
    "system user assistant hello world 0 1 2 3 4 5 6 7 8 9",
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    return fast


def build_tiny_llama(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


# What transformers' loaders (initialization.py: no_init_weights, guard_torch_init_functions,
# no_tie_weights, meta_device_safe_creation_ops; modeling_utils.py: local_torch_dtype) and PEFT's
# init_empty_weights (peft/utils/integrations.py) swap while they build a model and put back afterwards.
INIT_FUNCTIONS = (
    "uniform_", "normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_", "sparse_",
)  # fmt: skip
INIT_MODULES = (
    "torch.nn.init", "torch.nn.modules.activation", "torch.nn.modules.transformer", "torch.nn.modules.linear",
    "torch.nn.modules.loss", "torch.nn.modules.batchnorm", "torch.nn.modules.conv",
    "torch.nn.modules.normalization", "torch.nn.modules.rnn", "torch.nn.modules.sparse",
)  # fmt: skip


def swappable_globals() -> dict[tuple[object, str], object]:
    """(owner, attribute) -> the object there now, for everything a model load swaps; {} before torch is imported."""
    if "torch" not in sys.modules:
        return {}
    import torch

    places: list[tuple[object, str]] = [
        (torch, name) for name in ("linspace", "empty", "zeros", "ones", "full")
    ]
    places += [(torch.nn.Module, "register_parameter"), (torch.nn.Module, "register_buffer")]
    places += [
        (sys.modules[module], name)
        for module in INIT_MODULES
        if module in sys.modules
        for name in INIT_FUNCTIONS
        if hasattr(sys.modules[module], name)
    ]
    if "transformers.modeling_utils" in sys.modules:
        pretrained = sys.modules["transformers.modeling_utils"].PreTrainedModel
        places += [(pretrained, "tie_weights"), (pretrained, "init_weights")]
    return {
        (owner, name): owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        for owner, name in places
    }


def is_stand_in(function: object) -> bool:
    """A loader's temporary replacement: a closure (`empty_func`, `_safe_linspace`, PEFT's wrappers) or
    one of transformers' guarded init functions. The originals are plain module-level functions."""
    qualname = getattr(function, "__qualname__", "")
    return "<locals>" in qualname or getattr(function, "__module__", "") == "transformers.initialization"


def _label(owner: object, name: str) -> str:
    return f"{getattr(owner, '__qualname__', None) or getattr(owner, '__name__', owner)}.{name}"


def swapped_since(before: dict[tuple[object, str], object]) -> list[str]:
    """What is no longer what it was (`before` from `swappable_globals`) or is a loader's stand-in."""
    now = swappable_globals()
    changed = [place for place, function in now.items() if place in before and before[place] is not function]
    left = [place for place, function in now.items() if is_stand_in(function)]
    return sorted({_label(*place) for place in changed + left})


@pytest.fixture(autouse=True)
def _nothing_left_swapped():
    """Fail the test that leaves a loader's stand-in in place (a racing load), then put the originals back
    so that the tests after it do not fail for it ("Cannot copy out of meta tensor"). Both looks are
    taken holding the build lock: a build a server thread is still running (an export the test
    started) holds it, and its stand-ins are in place until it ends, as they should be."""
    from tunery.models import model_construction

    with model_construction():
        before = swappable_globals()
        dtype = sys.modules["torch"].get_default_dtype() if "torch" in sys.modules else None
    yield
    with model_construction():
        swapped = swapped_since(before)
        if dtype is not None and sys.modules["torch"].get_default_dtype() != dtype:
            swapped.append(
                f"torch's default dtype (now {sys.modules['torch'].get_default_dtype()}, was {dtype})"
            )
            sys.modules["torch"].set_default_dtype(dtype)
        if swapped:
            for (owner, name), function in before.items():
                setattr(owner, name, function)
    if swapped:
        pytest.fail(f"left swapped by a model load: {', '.join(swapped)}")


@pytest.fixture(scope="session")
def tunery_home(tmp_path_factory) -> Path:
    """A TUNERY_HOME for the test session; converted real models are shared with the user's cache
    (converting SmolLM2 takes ~20 s), everything else (tokenisation cache, datasets) stays here."""
    from tunery.models import tunery_home as real_home

    home = tmp_path_factory.mktemp("tunery-home")
    models = real_home() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(models, target_is_directory=True)
    return home


@pytest.fixture(scope="session", autouse=True)
def _model_roots(tmp_path_factory):
    """The test session's temporary folder is a model root of every service the tests start (the tiny
    models live there), as an operator's TUNERY_MODEL_ROOTS would be; the service's own storage in it
    stays refused (service/domain/references.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNERY_MODEL_ROOTS", json.dumps([str(tmp_path_factory.getbasetemp())]))
        yield


@pytest.fixture(autouse=True)
def _isolated_home(tunery_home, monkeypatch):
    monkeypatch.setenv("TUNERY_HOME", str(tunery_home))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny llama + tokenizer: loadable by path like any local model."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.config.pad_token_id = tiny_tokenizer.pad_token_id
    model.config.eos_token_id = tiny_tokenizer.eos_token_id
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chat_rows(n: int) -> list[dict]:
    """n short chats whose answers follow a learnable pattern."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"item {i % 7} quantity {i % 5}"},
                    {"role": "assistant", "content": f'{{"item": {i % 7}, "quantity": {i % 5}}}'},
                ]
            }
        )
    return rows


@pytest.fixture
def chat_files(tmp_path) -> tuple[Path, Path]:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(24))
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(6))
    return train, valid
