"""Answers printed by `tunery chat` and `tunery eval` stay whole in a pipe: no wrapping, no markup."""

from __future__ import annotations

import json

from tunery.cli.use import print_answer


def test_a_long_json_answer_is_one_unwrapped_line_with_its_brackets(capsys):
    answer = json.dumps(
        {"customer": "Ines", "items": [f"[bold]jar {i}[/]" for i in range(20)], "city": "Braga"}
    )
    assert len(answer) > 200
    print_answer("tuned     ", answer)
    print_answer("", answer)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"tuned     {answer}", answer]
