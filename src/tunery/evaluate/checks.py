"""Format checks a user declares for generated answers: valid JSON, a regex, one of a set of labels, a length.

Written on the command line as `--check json`, `--check 'regex:\\d{4}-\\d{2}'`,
`--check labels:positive,negative`, `--check max_chars:200`.

    check = parse_check("labels:yes,no")
    check.passes(" yes ")  # True: surrounding whitespace is ignored
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from tunery.errors import TuneryError

CheckKind = Literal["json", "regex", "labels", "max_chars"]
SPELLING = "json, regex:PATTERN, labels:A,B,C or max_chars:N"


class CheckError(TuneryError, ValueError):
    """A format check is written wrongly; the message shows how to write it."""

    code = "invalid_check"


@dataclass(frozen=True)
class FormatCheck:
    kind: CheckKind
    argument: str = ""

    @property
    def name(self) -> str:
        return self.kind if not self.argument else f"{self.kind}:{self.argument}"

    def passes(self, answer: str) -> bool:
        text = answer.strip()
        if self.kind == "json":
            return _is_json(text)
        if self.kind == "regex":
            # The whole answer must match: a pattern found somewhere inside would pass chatty answers.
            return re.fullmatch(self.argument, text, flags=re.DOTALL) is not None
        if self.kind == "labels":
            return text in self.argument.split(",")
        return len(text) <= int(self.argument)


def parse_check(text: str) -> FormatCheck:
    kind, _, argument = text.partition(":")
    if kind == "json" and not argument:
        return FormatCheck("json")
    if kind == "regex" and argument:
        try:
            re.compile(argument)
        except re.error as err:
            raise CheckError(f"check '{text}': not a valid regular expression: {err}") from None
        return FormatCheck("regex", argument)
    if kind == "labels" and argument.strip(","):
        return FormatCheck("labels", argument)
    if kind == "max_chars" and argument.isdigit():
        return FormatCheck("max_chars", argument)
    raise CheckError(f"check '{text}' is not understood; write one of: {SPELLING}")


def check_answer(answer: str, checks: list[FormatCheck]) -> dict[str, bool]:
    return {check.name: check.passes(answer) for check in checks}


def pass_rates(results: list[dict[str, bool]]) -> dict[str, float]:
    """Share of answers passing each check."""
    if not results:
        return {}
    return {name: sum(result[name] for result in results) / len(results) for name in results[0]}


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True
