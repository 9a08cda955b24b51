"""Does the prompt a model gets at inference match what it was trained on, token for token?

Training renders each chat row whole and trains on the assistant turns; serving renders
the messages before an assistant turn with `add_generation_prompt=True` and lets the model
go on from there (`serve/engine.py::encode_chat`: no special tokens added). If that prompt
is not an exact prefix of the training tokens (a template that writes the header
differently with the generation prompt, a BPE merge across the boundary), the model is
asked at inference for a continuation it never saw: the silent cause of garbled or
repeated answers after fine-tuning. And if the trained span of a turn does not end with
the template's end-of-turn token, the model never learns to stop.

    issues = check_round_trip(examples, tokenizer)     # [] when every assistant turn agrees
    issues = check_round_trip_cached(examples, tokenizer)  # the same, from disk the second time
    report_template_issues(issues, strict=False)       # log a warning, or raise TemplateError

Every assistant turn of a row is checked, since training puts loss on all of them. The
training tokens and the mask come from `tokenize.encode_all` itself (the code training
runs), untruncated: truncation is the length report's business, not the template's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from os.path import commonprefix
from pathlib import Path
from typing import Literal

from tunery.data.load import short_list
from tunery.data.tokenize import (
    IGNORE,
    Encoded,
    TemplateError,
    _apply,
    _with_bos,
    encode_all,
    tokenizer_fingerprint,
)
from tunery.data.types import Example
from tunery.files import write_atomic

log = logging.getLogger("tunery.data")

CHECK_VERSION = 1  # bump when the check changes what it reports: cached results stop matching
UNTRUNCATED = 2**62  # max_length for encode_all: the check looks at whole rows
SHOWN = 5  # issues spelled out in a warning or an error; the rest are counted
EXCERPT = 48  # characters of each text shown either side of where they part
_PROBE = "tunery-end-of-turn-probe"


@dataclass(frozen=True)
class TemplateIssue:
    """One assistant turn whose inference prompt or trained span does not match training.

    kind "prompt": the generation prompt's tokens are not a prefix of the training tokens;
    at `position`, inference has `expected` and training has `found` (None: that side ended).
    kind "end": the turn's trained span does not end with the end-of-turn token `expected`;
    `found` is its last trained token, at `position`.
    """

    line: int
    turn: int  # index of the assistant message in the row's messages
    kind: Literal["prompt", "end"]
    position: int
    expected: str | None
    found: str | None
    expected_id: int | None
    found_id: int | None
    prompt_text: str  # what the model gets at inference, up to this turn
    training_text: str  # the row as training renders it
    at: int  # the character of both texts where the excerpts are centred

    @property
    def message(self) -> str:
        where = f"line {self.line}, message {self.turn + 1} (assistant)"
        if self.kind == "prompt":
            head = (
                f"{where}: the inference prompt is not a prefix of the training tokens: token "
                f"{self.position} is {_shown(self.expected, self.expected_id)} at inference but "
                f"{_shown(self.found, self.found_id)} in training"
            )
        elif self.expected is None:
            head = f"{where}: the chat template writes no end-of-turn token after an answer"
        else:
            head = (
                f"{where}: the trained span ends with {_shown(self.found, self.found_id)} (token "
                f"{self.position}), not the end-of-turn token {_shown(self.expected, self.expected_id)}"
            )
        return (
            f"{head}\n    inference: {_excerpt(self.prompt_text, min(self.at, len(self.prompt_text)))}"
            f"\n    training:  {_excerpt(self.training_text, self.at)}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


def check_round_trip(examples: Sequence[Example], tokenizer) -> list[TemplateIssue]:
    """The issues of every assistant turn of the chat rows (other kinds have no template)."""
    chats = [e for e in examples if e.kind == "chat" and any(m.role == "assistant" for m in e.messages)]
    if not chats:
        return []
    end_id = end_of_turn_id(tokenizer)
    turns = [(row, index) for row, e in enumerate(chats) for index in _assistant_turns(e)]
    prompts = [_apply(tokenizer, _messages(chats[row])[:index], True) for row, index in turns]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    encoded = _encode_each(chats, tokenizer)
    by_row: dict[int, list[tuple[int, str, list[int]]]] = {}
    for (row, index), text, ids in zip(turns, prompts, prompt_ids, strict=True):
        by_row.setdefault(row, []).append((index, text, list(ids)))
    issues = []
    for row, example in enumerate(chats):
        issues += _row_issues(example, encoded[row], by_row[row], tokenizer, end_id)
    return issues


def check_round_trip_cached(
    examples: Sequence[Example], tokenizer, cache_dir: str | Path | None = None
) -> list[TemplateIssue]:
    """`check_round_trip`, read from `cache_dir` (default $TUNERY_HOME/tokenized) when done before.

    Keyed by the rows, the tokenizer and its chat template: a training restart costs a hash.
    """
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = folder / f"template-{_check_key(examples, tokenizer)}.json"
    if path.exists():
        try:
            return [TemplateIssue(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            pass  # damaged entry: check again and overwrite it
    issues = check_round_trip(examples, tokenizer)
    write_atomic(path, json.dumps([asdict(issue) for issue in issues], ensure_ascii=False))
    return issues


def report_template_issues(issues: Sequence[TemplateIssue], strict: bool, source: str = "") -> None:
    """Warn in the log (default), or raise `TemplateError` (data.strict_template) before training."""
    if not issues:
        return
    text = describe_issues(issues, source)
    if strict:
        raise TemplateError(f"{text}\n(data.strict_template is true; fix the chat template or the rows)")
    log.warning("%s", text)


def with_issues(err: TemplateError, issues: Sequence[TemplateIssue], source: str = "") -> TemplateError:
    """Training's refusal of a template (it cannot find the answers) with the rows and tokens behind it."""
    return TemplateError(f"{err}\n{describe_issues(issues, source)}") if issues else err


def describe_issues(issues: Sequence[TemplateIssue], source: str = "") -> str:
    """The first few issues spelled out, the rest counted, with the lines of all of them."""
    where = f"{source}: " if source else ""
    lines = sorted({issue.line for issue in issues})
    head = (
        f"{where}the chat template's inference prompt does not round-trip on {len(lines)} row(s) "
        f"(lines {short_list(lines)}); the model would be asked at inference for text it was not "
        "trained on"
    )
    shown = [issue.message for issue in issues[:SHOWN]]
    more = [f"... and {len(issues) - SHOWN} more"] if len(issues) > SHOWN else []
    return "\n  ".join([head, *shown, *more])


def end_of_turn_id(tokenizer) -> int | None:
    """The template's end-of-turn token: the first special token it writes after an answer.

    Read from the template itself (`<|im_end|>` for ChatML, `<|eot_id|>` for Llama 3,
    `<end_of_turn>` for Gemma), so no model needs an entry in a table; the tokenizer's EOS
    when the template cannot be probed.
    """
    probe = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = _apply(tokenizer, probe, False)
    except Exception:  # a template with its own rules (roles, a required system turn): fall back
        return tokenizer.eos_token_id
    if _PROBE not in text:
        return tokenizer.eos_token_id
    after = text[text.rindex(_PROBE) + len(_PROBE) :]
    special = _special_ids(tokenizer)
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    return next((token for token in ids if token in special), None)


def _row_issues(
    example: Example, encoded: Encoded | None, turns: list[tuple[int, str, list[int]]], tokenizer, end_id
) -> list[TemplateIssue]:
    training_ids = encoded.input_ids if encoded else _training_ids(example, tokenizer)
    issues = []
    for number, (index, prompt_text, prompt_ids) in enumerate(turns):
        issue = _prefix_issue(example, index, prompt_text, prompt_ids, training_ids, tokenizer)
        if issue is None and encoded is not None:
            stop = turns[number + 1][2] if number + 1 < len(turns) else training_ids
            issue = _end_issue(example, index, prompt_text, prompt_ids, len(stop), encoded, tokenizer, end_id)
        if issue is not None:
            issues.append(issue)
    return issues


def _prefix_issue(example, index, prompt_text, prompt_ids, training_ids, tokenizer) -> TemplateIssue | None:
    if training_ids[: len(prompt_ids)] == prompt_ids:
        return None
    at = next(
        (i for i, (a, b) in enumerate(zip(prompt_ids, training_ids, strict=False)) if a != b),
        min(len(prompt_ids), len(training_ids)),
    )
    expected = prompt_ids[at] if at < len(prompt_ids) else None
    found = training_ids[at] if at < len(training_ids) else None
    return _issue(example, index, "prompt", at, expected, found, prompt_text, tokenizer, training_ids)


def _end_issue(
    example, index, prompt_text, prompt_ids, stop: int, encoded: Encoded, tokenizer, end_id
) -> TemplateIssue | None:
    """The last trained token of the turn that is not whitespace must be the end-of-turn token."""
    trained = [i for i in range(len(prompt_ids), stop) if encoded.labels[i] != IGNORE]
    last = next((i for i in reversed(trained) if tokenizer.decode([encoded.input_ids[i]]).strip()), None)
    if last is None and trained:
        last = trained[-1]
    found = encoded.input_ids[last] if last is not None else None
    if end_id is not None and found == end_id:
        return None
    position = last if last is not None else len(prompt_ids)
    return _issue(example, index, "end", position, end_id, found, prompt_text, tokenizer, encoded.input_ids)


def _issue(example, index, kind, position, expected, found, prompt_text, tokenizer, ids) -> TemplateIssue:
    """Only rows with an issue get here, so rendering the row once more costs nothing that matters."""
    decode = lambda token: None if token is None else tokenizer.decode([token])  # noqa: E731
    training_text = _apply(tokenizer, _messages(example), False)
    if kind == "prompt":  # where the two texts part (or, tokens apart but texts alike, the prompt's end)
        at = len(commonprefix([prompt_text, training_text]))
    else:  # just after the turn's last trained token
        at = len(tokenizer.decode(ids[: position + 1]))
    return TemplateIssue(
        line=example.line, turn=index, kind=kind, position=position, expected=decode(expected),
        found=decode(found), expected_id=expected, found_id=found, prompt_text=prompt_text,
        training_text=training_text, at=at,
    )  # fmt: skip


def _encode_each(chats: list[Example], tokenizer) -> list[Encoded | None]:
    """Training's own encoding of each row, untruncated; None for a row whose turns it cannot locate."""
    try:
        return list(encode_all(chats, tokenizer, UNTRUNCATED, "assistant"))
    except TemplateError:
        pass  # some row's turns render differently as the conversation grows: find which, one by one
    encoded: list[Encoded | None] = []
    for example in chats:
        try:
            encoded.append(encode_all([example], tokenizer, UNTRUNCATED, "assistant")[0])
        except TemplateError:
            encoded.append(None)
    return encoded


def _training_ids(example: Example, tokenizer) -> list[int]:
    """The row's tokens as encode_all makes them, for a row encode_all refuses (no mask to read)."""
    text = _apply(tokenizer, _messages(example), False)
    return _with_bos(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])


def _messages(example: Example) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in example.messages]


def _assistant_turns(example: Example) -> list[int]:
    return [index for index, m in enumerate(example.messages) if m.role == "assistant"]


def _special_ids(tokenizer) -> set[int]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return set(tokenizer.all_special_ids) | {
        i for i, token in added.items() if getattr(token, "special", False)
    }


def _shown(text: str | None, token: int | None) -> str:
    return "nothing (the tokens end)" if text is None else f"{text!r} (id {token})"


def _excerpt(text: str, at: int) -> str:
    start = max(0, at - EXCERPT)
    return (
        ("..." if start else "")
        + repr(text[start : at + EXCERPT])
        + ("..." if at + EXCERPT < len(text) else "")
    )


def _check_key(examples: Sequence[Example], tokenizer) -> str:
    digest = hashlib.sha256(json.dumps([CHECK_VERSION, tokenizer_fingerprint(tokenizer)]).encode())
    for example in examples:
        digest.update(json.dumps(asdict(example), ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _default_cache_dir() -> Path:
    from tunery.models import tunery_home

    return tunery_home() / "tokenized"
