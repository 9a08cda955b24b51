"""More training rows from the ones you have: token edits, paraphrase and back-translation.

    rewriters = {"paraphrase": load_rewriter("smollm2-135m-instruct")}
    result = augment_file("data/train.jsonl", ["swap", "synonym", "paraphrase"], rewriters=rewriters)
    write_jsonl(result.rows, "data/train.augmented.jsonl")
    result.stats["synonym"]          # StrategyStats(produced=291, rejected_duplicate=29, rejected_empty=0)

Strategies rewrite the prompt side only (the last user turn of a chat, the prompt of a
completion row, the text of a classification row) and keep the answer or label:
- `swap`, `delete`, `synonym`: the token operations of easy data augmentation (Wei & Zou,
  2019), on about `alpha` of the words (at least one). Words with digits are never touched,
  since they usually carry the answer. Synonyms come from the offline lexicon in `synonyms.py`.
- `paraphrase`: through a local model with a prompt template (`generation.py`).
- `backtranslate`: through a model into a pivot language and a second model back.

Each new row is the original row's content plus an `augmentation` field:
`{"strategy", "parent": <row_hash of the parent>, "parent_line"}`. A candidate that is
empty, or equal (normalised) to any row already in the file or produced before, is
rejected and counted. The splitter (`split.py`) reads `augmentation.parent` to keep
augmented rows out of validation and test.

EDA is written here rather than taken from nlpaug or textattack: both pull in heavy
dependencies (nltk data, torch models) for a few lines of token shuffling.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tunery.data.fields import (
    AUGMENTATION_FIELD,
    extra_fields,
    last_user_text,
    normalise,
    row_hash,
    to_record,
    with_last_user_text,
)
from tunery.data.synonyms import synonyms_of
from tunery.data.types import Example

TOKEN_STRATEGIES = ("swap", "delete", "synonym")
MODEL_STRATEGIES = ("paraphrase", "backtranslate")
STRATEGIES = TOKEN_STRATEGIES + MODEL_STRATEGIES
WORD = re.compile(r"\S+")


@dataclass
class StrategyStats:
    produced: int = 0
    rejected_duplicate: int = 0
    rejected_empty: int = 0


@dataclass
class Augmented:
    rows: list[dict]  # the original rows, then the new ones
    stats: dict[str, StrategyStats] = field(default_factory=dict)


# --- token operations -----------------------------------------------------------------------
def _editable_words(text: str) -> list[re.Match]:
    return [m for m in WORD.finditer(text) if not any(c.isdigit() for c in m.group())]


def _how_many(n_words: int, alpha: float) -> int:
    return max(1, round(alpha * n_words))


def _replace_spans(text: str, replacements: dict[tuple[int, int], str]) -> str:
    out, position = [], 0
    for (start, end), new in sorted(replacements.items()):
        out += [text[position:start], new]
        position = end
    return "".join(out) + text[position:]


def swap_words(text: str, rng: random.Random, alpha: float = 0.1) -> str:
    """Swap about `alpha` of the words pairwise in place; spacing and line breaks stay."""
    words = _editable_words(text)
    if len(words) < 2:
        return text
    spans = {(m.start(), m.end()): m.group() for m in words}
    keys = list(spans)
    n_swaps = min(_how_many(len(words), alpha), len(words) // 2)
    picked = rng.sample(range(len(keys)), 2 * n_swaps)  # disjoint pairs, so no swap undoes another
    for a, b in zip(picked[::2], picked[1::2], strict=True):
        spans[keys[a]], spans[keys[b]] = spans[keys[b]], spans[keys[a]]
    return _replace_spans(text, spans)


def delete_words(text: str, rng: random.Random, alpha: float = 0.1) -> str:
    """Delete about `alpha` of the words (never all of them)."""
    words = _editable_words(text)
    if len(words) < 2:
        return text
    doomed = rng.sample(words, min(_how_many(len(words), alpha), len(words) - 1))
    spans = {(m.start(), _end_with_space(text, m.end())): "" for m in doomed}
    return _replace_spans(text, spans)


def _end_with_space(text: str, end: int) -> int:
    return end + 1 if end < len(text) and text[end] == " " else end


def replace_synonyms(text: str, rng: random.Random, alpha: float = 0.1) -> str:
    """Replace about `alpha` of the words that the lexicon knows with a synonym, keeping case and punctuation."""
    candidates = []
    for m in _editable_words(text):
        core = m.group().strip(".,;:!?\"'()")
        if core and synonyms_of(core.lower()):
            candidates.append((m, core))
    if not candidates:
        return text
    chosen = rng.sample(candidates, min(_how_many(len(_editable_words(text)), alpha), len(candidates)))
    spans = {}
    for m, core in chosen:
        synonym = rng.choice(synonyms_of(core.lower()))
        if core[0].isupper():
            synonym = synonym[0].upper() + synonym[1:]
        spans[(m.start(), m.end())] = m.group().replace(core, synonym, 1)
    return _replace_spans(text, spans)


TOKEN_OPERATIONS: dict[str, Callable[[str, random.Random, float], str]] = {
    "swap": swap_words,
    "delete": delete_words,
    "synonym": replace_synonyms,
}


# --- the whole file ---------------------------------------------------------------------------
def augment_examples(
    examples: list[Example],
    records: dict[int, dict],
    strategies: list[str],
    per_row: int = 1,
    seed: int = 0,
    alpha: float = 0.1,
    rewriters: dict[str, Callable[[list[str]], list[str]]] | None = None,
) -> Augmented:
    """Original rows plus `per_row` variants of each per strategy; rows that are already augmented are not parents."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    missing = [s for s in strategies if s in MODEL_STRATEGIES and s not in (rewriters or {})]
    if missing:
        raise ValueError(f"strategies {missing} need a model")
    rows = [to_record(e) | extra_fields(records[e.line]) for e in examples]
    seen = {row_hash(e) for e in examples}
    parents = [e for e in examples if AUGMENTATION_FIELD not in records[e.line]]
    result = Augmented(rows)
    for strategy in strategies:
        stats = result.stats.setdefault(strategy, StrategyStats())
        sources = [(parent, k) for parent in parents for k in range(per_row)]
        texts = _rewrite(strategy, [last_user_text(p) for p, _ in sources], sources, seed, alpha, rewriters)
        for (parent, _), text in zip(sources, texts, strict=True):
            candidate = with_last_user_text(parent, text)
            if not normalise(text):
                stats.rejected_empty += 1
            elif (key := row_hash(candidate)) in seen:
                stats.rejected_duplicate += 1
            else:
                seen.add(key)
                stats.produced += 1
                origin = {"strategy": strategy, "parent": row_hash(parent), "parent_line": parent.line}
                extra = extra_fields(records[parent.line])
                rows.append(to_record(candidate) | extra | {AUGMENTATION_FIELD: origin})
    return result


def _rewrite(strategy, texts, sources, seed, alpha, rewriters) -> list[str]:
    if strategy in TOKEN_OPERATIONS:
        operation = TOKEN_OPERATIONS[strategy]
        return [
            operation(text, random.Random(f"{seed}:{strategy}:{parent.line}:{k}"), alpha)
            for text, (parent, k) in zip(texts, sources, strict=True)
        ]
    return rewriters[strategy](texts)


def augment_file(
    path: str,
    strategies: list[str],
    per_row: int = 1,
    seed: int = 0,
    alpha: float = 0.1,
    rewriters: dict[str, Callable[[list[str]], list[str]]] | None = None,
    format: str = "auto",
) -> Augmented:
    """`augment_examples` on a file whose every row is valid."""
    from tunery.data.formats import load_checked
    from tunery.data.load import read_rows

    loaded = load_checked(path, format)
    return augment_examples(
        loaded.examples, dict(read_rows(path)), strategies, per_row, seed, alpha, rewriters
    )


def back_translator(
    forward: Callable[[list[str]], list[str]], back: Callable[[list[str]], list[str]]
) -> Callable[[list[str]], list[str]]:
    """Texts through `forward` into the pivot language and through `back` again."""
    return lambda texts: back(forward(texts))
