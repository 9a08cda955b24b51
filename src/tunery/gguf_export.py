"""Write a run's merged model as one GGUF file that llama.cpp, Ollama and LM Studio load.

    tunery export runs/demo --gguf out/model.gguf --quant q8_0 --ollama
    export_gguf("runs/demo", "out/model.gguf", quant="f16")          # -> GgufExport

Why our own writer and not llama.cpp's `convert_hf_to_gguf.py`: that script is not on PyPI and
moves with llama.cpp's tree, which is what breaks other tools' exports. We use only the `gguf`
package's writer, name tables and quantisers (llama.cpp's own Python library, pinned), and write
what llama.cpp reads: the architecture's tensor names and hyper-parameters, the byte-level BPE
vocabulary with its merges, token types and special ids, and the chat template, so llama.cpp
and Ollama apply the template themselves.

Only what we can write right is written: an architecture outside `ARCHITECTURES`, a tokenizer
that is not byte-level BPE, or a rope scaling we do not translate is refused before any byte is
written, and the file appears whole (written beside it, then renamed) or not at all.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.errors import TuneryError

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


class UnsupportedForGguf(TuneryError, ValueError):
    """The model, its tokenizer or the requested quantisation cannot be written as a correct GGUF file."""

    code = "gguf_unsupported"


@dataclass(frozen=True)
class GgufArchitecture:
    name: str  # llama.cpp's `general.architecture`
    permute_qk: bool  # llama.cpp's llama rotary pairs dimensions (i, i+1); transformers' pairs (i, i+d/2)


# transformers' model class -> how llama.cpp knows it. Mistral is llama to llama.cpp (as in its converter).
ARCHITECTURES = {
    "LlamaForCausalLM": GgufArchitecture("llama", permute_qk=True),  # SmolLM2, Llama 2/3
    "MistralForCausalLM": GgufArchitecture("llama", permute_qk=True),
    "Qwen2ForCausalLM": GgufArchitecture("qwen2", permute_qk=False),
}
# --quant choice -> (tensor type, llama.cpp file type). Only types the gguf package can quantise itself.
QUANTS = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}


@dataclass
class GgufExport:
    path: Path
    quant: str
    architecture: str
    tensors: int = 0
    fallbacks: dict[str, str] = field(default_factory=dict)  # tensor -> type used instead (rows too short)
    modelfile: Path | None = None


def export_gguf(
    run_path: str | Path,
    out_file: str | Path,
    quant: str = "f16",
    ollama: bool = False,
    progress: Progress | None = None,
) -> GgufExport:
    """Merge the run's adapter into its base model and write it as `out_file` (GGUF)."""
    from tunery.inference import load_merged

    out = Path(out_file)
    check_target(out, quant)
    report = progress or (lambda fraction, message: None)
    report(0.0, "merging the adapter into the base model")
    model, tokenizer = load_merged(run_path)
    result = write_gguf(model, tokenizer, out, quant, progress=report)
    if ollama:
        result.modelfile = write_modelfile(out, tokenizer)
    return result


def check_target(out: Path, quant: str) -> None:
    """Refuse a bad --quant or an existing file before minutes of merging."""
    if quant not in QUANTS:
        raise UnsupportedForGguf(f"--quant {quant!r} is not one of {', '.join(QUANTS)}")
    if out.suffix != ".gguf":
        raise UnsupportedForGguf(f"{out}: name the GGUF file with a .gguf suffix (e.g. out/model.gguf)")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new file name or delete it first")


def write_gguf(
    model: Any, tokenizer: Any, out: Path, quant: str, progress: Progress | None = None
) -> GgufExport:
    """Write a transformers causal LM and its tokenizer as one GGUF file (atomically)."""
    import gguf

    check_target(out, quant)
    architecture = architecture_of(model)
    tensors = model_tensors(model, architecture)  # every refusal happens before the file is opened
    vocabulary = read_vocabulary(tokenizer, model.config.vocab_size)
    result = GgufExport(out, quant, architecture.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(staging, architecture.name)
        write_hyperparameters(writer, model.config, quant, name=model_name(model))
        write_vocabulary(writer, vocabulary)
        add_tensors(writer, tensors, quant, result, progress)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, out)
    finally:
        Path(staging).unlink(missing_ok=True)
    if progress:
        progress(1.0, f"wrote {out}")
    return result


def architecture_of(model: Any) -> GgufArchitecture:
    config = model.config
    names = [type(model).__name__, *(getattr(config, "architectures", None) or [])]
    found = [ARCHITECTURES[name] for name in names if name in ARCHITECTURES]
    if not found:
        raise UnsupportedForGguf(
            f"GGUF export supports {', '.join(ARCHITECTURES)}; this model is {names[0]} "
            f"(model_type={getattr(config, 'model_type', '?')}). Export it as safetensors instead "
            "(tunery export RUN --merged OUT) and convert it with llama.cpp's own tools"
        )
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") not in ("default", "linear"):
        raise UnsupportedForGguf(
            f"rope_type={rope.get('rope_type')} is not written to GGUF yet (supported: default, linear)"
        )
    return found[0]


def rope_parameters(config: Any) -> dict[str, Any]:
    """transformers 5 keeps theta and scaling in `rope_parameters`; older configs in rope_theta/rope_scaling."""
    found = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    found.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return found


def model_name(model: Any) -> str:
    return Path(str(getattr(model.config, "_name_or_path", "") or "tunery-model")).name or "tunery-model"


def head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def write_hyperparameters(writer: Any, config: Any, quant: str, name: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_file_type(int(gguf.LlamaFileType[QUANTS[quant][1]]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(config.num_key_value_heads or config.num_attention_heads))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    dim = head_dim(config)
    writer.add_rope_dimension_count(dim)
    if dim * config.num_attention_heads != config.hidden_size:  # llama.cpp then reads the head size here
        writer.add_key_length(dim)
        writer.add_value_length(dim)
    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))


def model_tensors(model: Any, architecture: GgufArchitecture) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every weight, q/k permuted for llama's rotary layout."""
    import gguf

    config = model.config
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == architecture.name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)  # only this architecture's tensors
    found = []
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp uses token_embd for the output when output.weight is absent
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UnsupportedForGguf(
                f"tensor {hf_name} has no place in llama.cpp's {architecture.name} layout; this model is not "
                f"a plain {', '.join(ARCHITECTURES)}"
            )
        data = tensor.detach().float().cpu().numpy()
        found.append((gguf_name, permuted(gguf_name, data, config) if architecture.permute_qk else data))
    return found


def permuted(gguf_name: str, data: np.ndarray, config: Any) -> np.ndarray:
    """Reorder each head's rows of q and k from halves (x1..xd/2, y1..yd/2) to pairs (x1, y1, x2, y2, ...).

    transformers rotates dimension i with i+d/2 (rotate_half); llama.cpp's llama graph rotates i with
    i+1. Reordering the projection's output rows turns one layout into the other, exactly.
    """
    if ".attn_q." in gguf_name:
        heads = config.num_attention_heads
    elif ".attn_k." in gguf_name:
        heads = config.num_key_value_heads or config.num_attention_heads
    else:
        return data
    rest = data.shape[1:]
    halves = data.reshape(heads, 2, data.shape[0] // heads // 2, *rest)
    return halves.swapaxes(1, 2).reshape(data.shape)


def add_tensors(
    writer: Any,
    tensors: list[tuple[str, np.ndarray]],
    quant: str,
    result: GgufExport,
    progress: Progress | None,
) -> None:
    for index, (name, data) in enumerate(tensors):
        qtype, encoded = encode(name, data, quant)
        if qtype.name != QUANTS[quant][0] and data.ndim > 1:
            result.fallbacks[name] = qtype.name
        writer.add_tensor(name, encoded, raw_dtype=qtype)
        result.tensors += 1
        if progress:
            progress(0.1 + 0.85 * (index + 1) / len(tensors), f"{quant}: {name}")


def encode(name: str, data: np.ndarray, quant: str) -> tuple[Any, np.ndarray]:
    """The tensor in the requested type; norms (1-d) stay f32 as llama.cpp expects, and rows too short
    for a quantisation block fall back to f16 (llama.cpp's converter does the same)."""
    import gguf

    wanted = gguf.GGMLQuantizationType[QUANTS[quant][0]]
    if data.ndim == 1:
        wanted = gguf.GGMLQuantizationType.F32
    block_size = gguf.GGML_QUANT_SIZES[wanted][0]
    if data.shape[-1] % block_size:
        wanted = gguf.GGMLQuantizationType.F16
    return wanted, gguf.quants.quantize(data, wanted)


@dataclass
class Vocabulary:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str  # llama.cpp's name of the pre-tokenizer's split rule
    special: dict[str, int]  # bos/eos/unk/pad -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def read_vocabulary(tokenizer: Any, vocab_size: int) -> Vocabulary:
    """The tokenizer as llama.cpp's byte-level BPE ("gpt2") reads it; anything else is refused."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedForGguf(
            "the tokenizer has no tokenizer.json (a slow/sentencepiece tokenizer); GGUF export writes "
            "byte-level BPE vocabularies (SmolLM2, Llama 3, Qwen2) only"
        )
    spec = json.loads(backend.to_str())
    if spec["model"]["type"] != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise UnsupportedForGguf(
            f"the tokenizer is {spec['model']['type']} without byte-level pre-tokenisation (sentencepiece-style, "
            "as in Llama 2 and Mistral 7B v0.1); GGUF export writes byte-level BPE vocabularies (SmolLM2, "
            "Llama 3, Qwen2) only"
        )
    tokens, types = token_table(spec, vocab_size)
    return Vocabulary(
        tokens=tokens,
        types=types,
        merges=[m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]],
        pre=pre_tokenizer_name(spec.get("pre_tokenizer")),
        special=special_ids(tokenizer),
        add_bos=adds_token(tokenizer, tokenizer.bos_token_id, first=True),
        add_eos=adds_token(tokenizer, tokenizer.eos_token_id, first=False),
        chat_template=tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    )


def token_table(spec: dict[str, Any], vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens by id (padded to the embedding's rows) and their llama.cpp types."""
    import gguf

    by_id: dict[int, str] = {index: token for token, index in spec["model"]["vocab"].items()}
    kinds: dict[int, int] = {}
    for added in spec.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        kinds[added["id"]] = gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
    if max(by_id) >= vocab_size:
        raise UnsupportedForGguf(
            f"the tokenizer has token id {max(by_id)} but the model's embedding has only {vocab_size} rows"
        )
    tokens = [by_id.get(index, f"[PAD{index}]") for index in range(vocab_size)]
    types = [
        int(kinds.get(index, gguf.TokenType.NORMAL if index in by_id else gguf.TokenType.UNUSED))
        for index in range(vocab_size)
    ]
    return tokens, types


def pre_tokenizer_name(pre_tokenizer: dict[str, Any] | None) -> str:
    """llama.cpp names the regex that splits text before BPE; we recognise it from the tokenizer's spec.

    GPT-2's ByteLevel regex is "gpt-2" (llama.cpp's spelling); a digit split before it is SmolLM's ("smollm"); a Split with a
    pattern is named from transformers' table of llama.cpp names, so both read the file the same way.
    """
    steps = pre_tokenizer.get("pretokenizers", [pre_tokenizer]) if pre_tokenizer else []
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        name = split_rule_name(steps[0].get("pattern", {}).get("Regex"))
        if name:
            return name
    raise UnsupportedForGguf(
        f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) matches no split rule llama.cpp "
        "knows (gpt2, smollm, llama3, qwen2, ...); the GGUF file would tokenise differently, so it is not written"
    )


def split_rule_name(pattern: str | None) -> str | None:
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    return next((name for name, rule in GGUF_PRE_TOKENIZER_SPLITS.items() if rule == pattern), None)


def special_ids(tokenizer: Any) -> dict[str, int]:
    wanted = {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id,
        "pad": tokenizer.pad_token_id,
    }
    return {kind: int(index) for kind, index in wanted.items() if index is not None}


def adds_token(tokenizer: Any, token_id: int | None, first: bool) -> bool:
    """Whether encoding text puts this token first (bos) or last (eos), as llama.cpp's add_bos/add_eos say."""
    if token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0 if first else -1] == token_id


def write_vocabulary(writer: Any, vocabulary: Vocabulary) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocabulary.pre)
    writer.add_token_list(vocabulary.tokens)
    writer.add_token_types(vocabulary.types)
    writer.add_token_merges(vocabulary.merges)
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for kind, index in vocabulary.special.items():
        adders[kind](index)
    writer.add_add_bos_token(vocabulary.add_bos)
    writer.add_add_eos_token(vocabulary.add_eos)
    if vocabulary.chat_template:
        writer.add_chat_template(vocabulary.chat_template)


# Ollama's templates are Go templates; these two families are translated, others rely on the GGUF's own.
OLLAMA_TEMPLATES = {
    "<|im_start|>": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    ),
    "<|start_header_id|>": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}


def write_modelfile(gguf_file: Path, tokenizer: Any) -> Path:
    """An Ollama Modelfile beside the GGUF: FROM, the chat template in Go form, the stop tokens.

    ollama create my-model -f out/Modelfile
    """
    from tunery.files import write_atomic

    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    lines = [f"FROM ./{gguf_file.name}"]
    go_template = next((go for marker, go in OLLAMA_TEMPLATES.items() if marker in template), None)
    if go_template:
        lines.append(f'TEMPLATE """{go_template}"""')
    else:
        lines.append("# no TEMPLATE: Ollama reads the chat template embedded in the GGUF file")
    stops = [
        token for token in (tokenizer.eos_token, "<|im_end|>", "<|eot_id|>") if token and token in template
    ]
    lines += [f'PARAMETER stop "{token}"' for token in dict.fromkeys(stops)]
    path = gguf_file.parent / "Modelfile"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
