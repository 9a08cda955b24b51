"""Which texts can still grow into one JSON object: the automaton behind `response_format: json_object`.

    state = START
    for ch in '{"a": [1, tru':
        state = advance(state, ch)      # None as soon as no JSON object starts this way
    state is not None and not complete(state)

Why our own: the constrained decoder asks, for each candidate token's piece of text, whether the
answer so far plus that piece is still the start of a JSON object; libraries that do this
(outlines, lm-format-enforcer) bring a grammar compiler and their own tokenizer indexes for
a check this small. A state is a plain tuple, so trying a candidate copies nothing.

Whitespace outside strings is limited to single spaces, so a constrained answer cannot run on
as blanks; control characters inside strings must be escaped, as JSON says.
"""

from __future__ import annotations

State = tuple[str, tuple[str, ...], str, bool]  # (mode, open containers, detail, last was a space)

START: State = ("root", (), "", False)
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
_NUMBER_END = {"int0", "int", "frac", "exp"}
_ESCAPES = set('"\\/bfnrtu')
_HEX = set("0123456789abcdefABCDEF")


def complete(state: State) -> bool:
    return state[0] == "done"


def advance_text(state: State | None, text: str) -> State | None:
    for ch in text:
        if state is None:
            return None
        state = advance(state, ch)
    return state


def advance(state: State, ch: str) -> State | None:
    mode, stack, detail, spaced = state
    if mode == "string":
        return _in_string(stack, detail, ch)
    if mode == "literal":
        if not detail or ch != detail[0]:
            return None
        return ("literal", stack, detail[1:], False) if len(detail) > 1 else _after_value(stack)
    if mode == "number":
        grown = _number(detail, ch)
        if grown is not None:
            return ("number", stack, grown, False)
        if detail not in _NUMBER_END:
            return None
        return advance(_after_value(stack), ch)
    if ch == " ":
        return None if spaced or mode in ("root", "done") else (mode, stack, detail, True)
    return _structural(mode, stack, ch)


def _structural(mode: str, stack: tuple[str, ...], ch: str) -> State | None:
    if mode == "root":
        return ("key_or_end", ("o",), "", False) if ch == "{" else None
    if mode == "key_or_end" and ch == "}":
        return _close(stack, "o")
    if mode in ("key_or_end", "key"):
        return ("string", stack, "key", False) if ch == '"' else None
    if mode == "colon":
        return ("value", stack, "", False) if ch == ":" else None
    if mode == "value_or_end" and ch == "]":
        return _close(stack, "a")
    if mode in ("value", "value_or_end"):
        return _start_value(stack, ch)
    if mode == "comma_or_end":
        if ch == ",":
            return ("key", stack, "", False) if stack[-1] == "o" else ("value", stack, "", False)
        return _close(stack, "o" if ch == "}" else "a" if ch == "]" else "")
    return None  # done: nothing may follow the object


def _start_value(stack: tuple[str, ...], ch: str) -> State | None:
    if ch == "{":
        return ("key_or_end", (*stack, "o"), "", False)
    if ch == "[":
        return ("value_or_end", (*stack, "a"), "", False)
    if ch == '"':
        return ("string", stack, "value", False)
    if ch in _LITERALS:
        return ("literal", stack, _LITERALS[ch], False)
    if ch == "-":
        return ("number", stack, "minus", False)
    if ch.isdigit() and ch.isascii():
        return ("number", stack, "int0" if ch == "0" else "int", False)
    return None


def _close(stack: tuple[str, ...], kind: str) -> State | None:
    if not kind or not stack or stack[-1] != kind:
        return None
    return _after_value(stack[:-1])


def _after_value(stack: tuple[str, ...]) -> State:
    return ("comma_or_end", stack, "", False) if stack else ("done", (), "", False)


def _in_string(stack: tuple[str, ...], detail: str, ch: str) -> State | None:
    """detail: "key"/"value", then "\\" after a backslash, "u0".."u3" inside a \\u escape."""
    role, _, escape = detail.partition(":")
    if escape == "\\":
        if ch not in _ESCAPES:
            return None
        return ("string", stack, f"{role}:u0" if ch == "u" else role, False)
    if escape.startswith("u"):
        if ch not in _HEX:
            return None
        done = int(escape[1]) + 1
        return ("string", stack, role if done == 4 else f"{role}:u{done}", False)
    if ch == "\\":
        return ("string", stack, f"{role}:\\", False)
    if ch == '"':
        return ("colon", stack, "", False) if role == "key" else _after_value(stack)
    return None if ord(ch) < 0x20 else ("string", stack, role, False)


def _number(part: str, ch: str) -> str | None:
    """The number's next part after `ch`, or None when `ch` does not continue it."""
    digit = ch.isdigit() and ch.isascii()
    moves = {
        "minus": "int0" if ch == "0" else "int" if digit else None,
        "int0": "frac0" if ch == "." else "exp0" if ch in "eE" else None,
        "int": "int" if digit else "frac0" if ch == "." else "exp0" if ch in "eE" else None,
        "frac0": "frac" if digit else None,
        "frac": "frac" if digit else "exp0" if ch in "eE" else None,
        "exp0": "expsign" if ch in "+-" else "exp" if digit else None,
        "expsign": "exp" if digit else None,
        "exp": "exp" if digit else None,
    }
    return moves[part]
