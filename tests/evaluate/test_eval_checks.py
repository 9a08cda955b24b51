"""Format checks a user declares, on answers that pass and answers that fail."""

from __future__ import annotations

import pytest

from tunery.evaluate.checks import CheckError, check_answer, parse_check, pass_rates


@pytest.mark.parametrize(
    ("check", "passing", "failing"),
    [
        ("json", '{"item": 3, "quantity": 1}', '{"item": 3, quantity: 1}'),
        ("json", " [1, 2] ", "Sure! Here is the JSON: {}"),
        (r"regex:\d{4}-\d{2}-\d{2}", "2024-05-01", "on 2024-05-01"),  # the whole answer must match
        ("labels:positive,negative", " negative\n", "neutral"),
        ("labels:positive,negative", "positive", "Positive"),
        ("max_chars:5", "hello", "hello!"),
    ],
)
def test_a_check_passes_good_answers_and_fails_bad_ones(check, passing, failing):
    parsed = parse_check(check)
    assert parsed.passes(passing)
    assert not parsed.passes(failing)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "yaml",
            "check 'yaml' is not understood; write one of: json, regex:PATTERN, labels:A,B,C or max_chars:N",
        ),
        ("max_chars:ten", "check 'max_chars:ten' is not understood"),
        ("regex:(", "check 'regex:(': not a valid regular expression"),
        ("labels:", "check 'labels:' is not understood"),
    ],
)
def test_a_badly_written_check_is_refused_with_how_to_write_it(text, message):
    with pytest.raises(CheckError, match=message.replace("(", r"\(").replace("'", "'")):
        parse_check(text)


def test_pass_rates_are_shares_of_answers_per_check():
    checks = [parse_check("json"), parse_check("max_chars:4")]
    results = [check_answer(answer, checks) for answer in ["{}", "[1, 2, 3]", "nope"]]
    assert results[0] == {"json": True, "max_chars:4": True}
    assert pass_rates(results) == {"json": 2 / 3, "max_chars:4": 2 / 3}
