"""Turn examples into token ids and labels, with loss only where the model should learn.

Chat examples use the model's own chat template. Assistant tokens are found by
rendering the conversation up to each assistant turn (with the generation
prompt) and up to the end of that turn: the characters in between are the
answer, and the tokens whose characters fall there carry loss. This works for
any template that renders earlier turns the same way as the conversation grows;
`mask_assistant_spans` refuses a template that does not, before training starts.
Hugging Face's `{% generation %}` markers would need templates few models ship.

    encoded = encode_examples(examples, tokenizer, max_length=1024, train_on="assistant")
    encoded = encode_examples_cached(examples, tokenizer, 1024, "assistant")  # second call: from disk

Tokenising is the largest part of start-up once the model is cached (the chat
template renders each conversation three times to find the assistant spans), so
`encode_examples_cached` keeps the result on disk, keyed by a hash of the
examples, the tokenizer, its chat template and the encoding settings: change any
of them and the key changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunery.data.types import Example, TokenCount
from tunery.errors import TuneryError

ENCODING_VERSION = 1  # bump when encode_all changes what it produces: old cache entries stop matching
IGNORE = -100  # label of a token that carries no loss (the value torch's cross-entropy skips)

# Used when a model ships no chat template (base models): ChatML, the most common one.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TemplateError(TuneryError, ValueError):
    """The chat template cannot mark assistant turns, so assistant-only loss is impossible."""

    code = "invalid_training_file"


@dataclass
class Encoded:
    line: int
    input_ids: list[int]
    labels: list[int]
    n_tokens_before_truncation: int = 0
    n_supervised_before_truncation: int = 0

    @property
    def n_supervised(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass
class EncodedData:
    examples: list[Encoded]
    dropped_lines: list[int] = field(default_factory=list)  # no supervised token left after truncation
    truncated_lines: list[int] = field(default_factory=list)


def ensure_chat_template(tokenizer) -> bool:
    """Give a template-less tokenizer ChatML; returns True when it did."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = CHATML_TEMPLATE
    return True


def render(example: Example, tokenizer, train_on: str) -> tuple[str, list[tuple[int, int]]]:
    """The full text of an example and the character spans that carry loss."""
    if example.kind == "chat":
        text, spans = render_chat(example, tokenizer)
    elif example.kind == "completion":
        text = example.prompt + example.completion + (tokenizer.eos_token or "")
        spans = [(len(example.prompt), len(text))]
    elif example.kind == "text":
        text = example.text + (tokenizer.eos_token or "")
        spans = [(0, len(text))]
    else:
        raise ValueError(
            f"line {example.line}: '{example.kind}' examples are for task=classification, not SFT"
        )
    return text, ([(0, len(text))] if train_on == "all" else spans)


def render_chat(example: Example, tokenizer) -> tuple[str, list[tuple[int, int]]]:
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    full = _apply(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _apply(tokenizer, messages[:index], add_generation_prompt=True)
        through = _apply(tokenizer, messages[: index + 1], add_generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise TemplateError(
                f"line {example.line}: the model's chat template renders earlier turns differently as the "
                "conversation grows, so assistant tokens cannot be located; set data.train_on=all"
            )
        spans.append((len(before), len(through)))
    return full, spans


def _apply(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    if not messages and not add_generation_prompt:
        return ""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def label_tokens(
    input_ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
) -> list[int]:
    """Copy a token id into labels when the token starts inside a supervised span."""
    labels = []
    for token, (start, end) in zip(input_ids, offsets, strict=True):
        inside = end > start and any(lo <= start < hi for lo, hi in spans)
        labels.append(token if inside else IGNORE)
    return labels


def encode_all(
    examples: Sequence[Example], tokenizer, max_length: int, train_on: str = "assistant"
) -> list[Encoded]:
    """Tokenise in one batched call (the fast tokenizer works in parallel), label, truncate."""
    rendered = [render(example, tokenizer, train_on) for example in examples]
    batch = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    encoded = []
    for example, (_, spans), ids, offsets in zip(
        examples, rendered, batch["input_ids"], batch["offset_mapping"], strict=True
    ):
        full_ids = _with_bos(tokenizer, ids)
        offsets = [(0, 0)] * (len(full_ids) - len(ids)) + list(offsets)
        labels = label_tokens(full_ids, offsets, spans)
        encoded.append(
            Encoded(
                example.line,
                full_ids[:max_length],
                labels[:max_length],
                n_tokens_before_truncation=len(full_ids),
                n_supervised_before_truncation=sum(label != IGNORE for label in labels),
            )
        )
    return encoded


def encode_examples(
    examples: Sequence[Example], tokenizer, max_length: int, train_on: str = "assistant"
) -> EncodedData:
    """Encode every example; drop those truncation left with no supervised token (never a silent zero loss)."""
    result = EncodedData(examples=[])
    for encoded in encode_all(examples, tokenizer, max_length, train_on):
        if encoded.n_tokens_before_truncation > max_length:
            result.truncated_lines.append(encoded.line)
        if encoded.n_supervised == 0:
            result.dropped_lines.append(encoded.line)
        else:
            result.examples.append(encoded)
    return result


def encode_examples_cached(
    examples: Sequence[Example],
    tokenizer,
    max_length: int,
    train_on: str = "assistant",
    cache_dir: str | Path | None = None,
) -> EncodedData:
    """`encode_examples`, read from `cache_dir` (default $TUNERY_HOME/tokenized) when done before."""
    key = encoding_key(examples, tokenizer, max_length, train_on)
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = folder / f"{key}.json"
    if path.exists():
        try:
            return _read_encoded(path)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # damaged entry: encode again and overwrite it
    result = encode_examples(examples, tokenizer, max_length, train_on)
    _write_encoded(result, path)
    return result


def encoding_key(examples: Sequence[Example], tokenizer, max_length: int, train_on: str) -> str:
    """sha256 of everything the encoded result depends on: data, tokenizer, template, settings."""
    digest = hashlib.sha256()
    settings = [ENCODING_VERSION, max_length, train_on, tokenizer_fingerprint(tokenizer)]
    digest.update(json.dumps(settings).encode())
    for example in examples:
        digest.update(json.dumps(asdict(example), ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the vocabulary, merges, normalisation, special tokens, BOS rule and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [
        type(tokenizer).__name__,
        backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True),
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
        str(getattr(tokenizer, "add_bos_token", None)),
        str(tokenizer.bos_token_id),
        tokenizer.chat_template
        if isinstance(tokenizer.chat_template, str)
        else json.dumps(tokenizer.chat_template),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _default_cache_dir() -> Path:
    from tunery.models import tunery_home

    return tunery_home() / "tokenized"


def _write_encoded(result: EncodedData, path: Path) -> None:
    """Write atomically: a run killed mid-write leaves no half file under the key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "examples": [asdict(e) for e in result.examples],
        "dropped_lines": result.dropped_lines,
        "truncated_lines": result.truncated_lines,
    }
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(payload, out, separators=(",", ":"))
    os.replace(tmp, path)


def _read_encoded(path: Path) -> EncodedData:
    payload = json.loads(path.read_text(encoding="utf-8"))
    return EncodedData(
        examples=[Encoded(**row) for row in payload["examples"]],
        dropped_lines=payload["dropped_lines"],
        truncated_lines=payload["truncated_lines"],
    )


def _with_bos(tokenizer, ids: list[int]) -> list[int]:
    """Chat templates usually write BOS themselves; plain text gets the one the tokenizer would add."""
    bos = tokenizer.bos_token_id
    wants_bos = getattr(tokenizer, "add_bos_token", False)
    if wants_bos and bos is not None and (not ids or ids[0] != bos):
        return [bos, *ids]
    return list(ids)


def token_counter(tokenizer, max_length: int, train_on: str = "assistant"):
    """A `count_tokens(example) -> TokenCount` for the data-check report."""

    def count_tokens(example: Example) -> TokenCount:
        (encoded,) = encode_all([example], tokenizer, max_length, train_on)
        return TokenCount(
            total=encoded.n_tokens_before_truncation,
            supervised=encoded.n_supervised_before_truncation,
            supervised_kept=encoded.n_supervised,
        )

    return count_tokens
