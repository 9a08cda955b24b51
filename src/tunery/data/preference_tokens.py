"""Preference rows as tokens: each side is prompt + answer, with labels on the answer only.

    encoded = encode_preferences(loaded.examples, tokenizer, max_length=512)
    pair = encoded.examples[0]; pair.sides()   # (prompt+chosen, prompt+rejected) as two `Encoded`

A pair is stored as one `Encoded` whose ids are the chosen side followed by the rejected
side (`chosen_length` marks the cut), so the batch planner, the data summary and the
tokenisation cache's JSON all handle it as they handle an SFT example, and the loss
packs the two sides into one padding-free row with per-sequence attention.
Each side is truncated to `max_length`; a side left with no answer token drops the row
(listed in `dropped_lines`), never a silent zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunery.data.preference import PreferenceExample
from tunery.data.tokenize import IGNORE, Encoded, EncodedData, label_tokens, render_chat
from tunery.data.types import Example, Message


@dataclass
class EncodedPreference(Encoded):
    """A pair (chosen then rejected ids in one list) or an unpaired KTO row (chosen only)."""

    chosen_length: int = 0  # input_ids[:chosen_length]: prompt + chosen; the rest: prompt + rejected
    desirable: bool | None = None  # unpaired rows: the KTO label
    reference: list[float] | None = None  # the reference model's summed log-prob of each side

    def sides(self) -> list[Encoded]:
        cut = self.chosen_length
        sides = [Encoded(self.line, self.input_ids[:cut], self.labels[:cut])]
        if cut < len(self.input_ids):
            sides.append(Encoded(self.line, self.input_ids[cut:], self.labels[cut:]))
        return sides


def side_texts(example: PreferenceExample, tokenizer) -> list[tuple[str, tuple[int, int]]]:
    """(full text, answer span) of each side: chosen, then rejected when the row is paired."""
    answers = [example.chosen] if example.rejected is None else [example.chosen, example.rejected]
    return [_render(example, answer, tokenizer) for answer in answers]


def _render(example: PreferenceExample, answer: str, tokenizer) -> tuple[str, tuple[int, int]]:
    if example.kind == "chat":
        assert isinstance(example.prompt, tuple)
        chat = Example(example.line, "chat", messages=(*example.prompt, Message("assistant", answer)))
        text, spans = render_chat(chat, tokenizer)
        return text, spans[-1]  # earlier assistant turns belong to the prompt
    text = f"{example.prompt}{answer}{tokenizer.eos_token or ''}"
    return text, (len(str(example.prompt)), len(text))


def encode_sides(example: PreferenceExample, tokenizer, max_length: int) -> tuple[list[Encoded], bool]:
    """Each side encoded and truncated to max_length, and whether truncation cut any."""
    rendered = side_texts(example, tokenizer)
    batch = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
    sides, truncated = [], False
    for (_, span), ids, offsets in zip(rendered, batch["input_ids"], batch["offset_mapping"], strict=True):
        ids, offsets = _with_bos(tokenizer, list(ids), list(offsets))
        labels = label_tokens(ids, offsets, [span])
        truncated |= len(ids) > max_length
        sides.append(Encoded(example.line, ids[:max_length], labels[:max_length], len(ids),
                             sum(label != IGNORE for label in labels)))  # fmt: skip
    return sides, truncated


def encode_preferences(
    examples: Sequence[PreferenceExample], tokenizer, max_length: int, unpaired: bool = False
) -> EncodedData:
    """Encode every row; `unpaired` splits each pair into a desirable and an undesirable row (KTO)."""
    result = EncodedData(examples=[])
    for example in examples:
        sides, truncated = encode_sides(example, tokenizer, max_length)
        if truncated:
            result.truncated_lines.append(example.line)
        if any(side.n_supervised == 0 for side in sides):
            result.dropped_lines.append(example.line)
            continue
        result.examples.extend(_rows(example, sides, unpaired))
    return result


def _rows(example: PreferenceExample, sides: list[Encoded], unpaired: bool) -> list[EncodedPreference]:
    if example.rejected is None or unpaired:
        labels = [example.desirable] if example.rejected is None else [True, False]
        return [_row(example.line, [side], desirable) for side, desirable in zip(sides, labels, strict=True)]
    return [_row(example.line, sides, None)]


def _row(line: int, sides: list[Encoded], desirable: bool | None) -> EncodedPreference:
    ids = [token for side in sides for token in side.input_ids]
    labels = [label for side in sides for label in side.labels]
    return EncodedPreference(line, ids, labels, len(ids), sum(label != IGNORE for label in labels),
                             chosen_length=len(sides[0].input_ids), desirable=desirable)  # fmt: skip


def _with_bos(tokenizer, ids: list[int], offsets: list) -> tuple[list[int], list]:
    """A template that writes no BOS gets the one the tokenizer would add (as SFT encoding does)."""
    bos = tokenizer.bos_token_id
    if getattr(tokenizer, "add_bos_token", False) and bos is not None and (not ids or ids[0] != bos):
        return [bos, *ids], [(0, 0), *offsets]
    return ids, offsets


# --- the reference log-prob cache, beside the tokenisation cache -------------------------------

REFERENCE_VERSION = 1  # bump when the reference computation changes: old entries stop matching


def reference_key(examples: Sequence[EncodedPreference], model_id: str) -> str:
    """sha256 of the token ids and labels of every side (data, tokenizer and template) and the model."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps([REFERENCE_VERSION, model_id]).encode())
    for example in examples:
        digest.update(json.dumps([example.input_ids, example.labels, example.chosen_length]).encode())
    return digest.hexdigest()


def read_reference(key: str, n_examples: int, cache_dir: Path | None = None) -> list[list[float]] | None:
    """The cached reference log-probs under `key`, or None when absent or damaged."""
    import json

    path = (cache_dir or _reference_dir()) / f"{key}.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return values if isinstance(values, list) and len(values) == n_examples else None


def write_reference(key: str, values: list[list[float]], cache_dir: Path | None = None) -> None:
    import json

    from tunery.files import write_atomic

    folder = cache_dir or _reference_dir()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{key}.json", json.dumps(values))


def _reference_dir() -> Path:
    from tunery.models import tunery_home

    return tunery_home() / "reference"
