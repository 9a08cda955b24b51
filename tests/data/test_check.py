"""check_data: duplicates, token lengths, over-long rows, labels, and the rendered report."""

import json

from rich.console import Console

from tunery.cli.render_data import render_data_check
from tunery.data import Example, LoadedData, Message, RowError, TokenCount, check_data


def chat(line, question, answer, system=None):
    messages = ((Message("system", system),) if system else ()) + (
        Message("user", question),
        Message("assistant", answer),
    )
    return Example(line=line, kind="chat", messages=messages)


def text(line, value, label=None):
    kind = "text" if label is None else "classification"
    return Example(line=line, kind=kind, text=value, label=label)


def loaded(examples, fmt="chat", path="train.jsonl", **kwargs):
    return LoadedData(
        path=path, format=fmt, examples=examples, n_rows=len(examples), content_hash="ab" * 32, **kwargs
    )


PARAGRAPH = (
    "The river bends twice before it reaches the old mill, where the water slows and "
    "the herons wait on the stones for the fish that come down with the spring floods."
)


def test_exact_duplicates_ignore_case_and_whitespace():
    examples = [
        chat(1, "What is 2+2?", "4"),
        chat(2, "Name a colour", "Red"),
        chat(3, "what is  2+2? ", "4"),
        chat(4, "Name a colour", "Blue"),
        chat(5, "WHAT IS 2+2?", "4\n"),
    ]
    assert check_data(loaded(examples)).exact_duplicates == [[1, 3, 5]]


def test_a_different_system_prompt_makes_rows_distinct_but_near_duplicates():
    examples = [
        chat(1, "Tell me about rivers", PARAGRAPH, "Be poetic"),
        chat(2, "Tell me about rivers", PARAGRAPH),
    ]
    report = check_data(loaded(examples))
    assert report.exact_duplicates == []
    assert report.near_duplicates == [[1, 2]]


def test_near_duplicates_are_grouped_by_line_and_unrelated_rows_are_not():
    examples = [
        text(1, PARAGRAPH),
        text(2, "A completely different sentence about compilers and the registers they allocate."),
        text(3, PARAGRAPH.replace("twice", "three times")),
        text(4, "Short and unrelated."),
        text(5, PARAGRAPH.replace("herons", "heron").replace("spring", "Spring")),
        text(6, PARAGRAPH[: len(PARAGRAPH) // 2]),  # half the shingles: Jaccard ~0.5, not a near duplicate
    ]
    report = check_data(loaded(examples, fmt="text"))
    assert report.near_duplicates == [[1, 3, 5]]
    assert report.exact_duplicates == []


def test_exact_duplicates_are_not_reported_again_as_near_duplicates():
    report = check_data(loaded([text(1, PARAGRAPH), text(2, PARAGRAPH.upper())], fmt="text"))
    assert (report.exact_duplicates, report.near_duplicates) == ([[1, 2]], [])


def fake_counter(counts):
    """A count_tokens that returns prepared counts by line."""
    return lambda example: counts[example.line]


def test_token_statistics_use_nearest_rank_percentiles():
    examples = [text(line, f"row {line}") for line in range(1, 21)]
    counts = {
        line: TokenCount(total=line * 10, supervised=line, supervised_kept=line) for line in range(1, 21)
    }
    report = check_data(loaded(examples, fmt="text"), count_tokens=fake_counter(counts))
    total = report.total_tokens
    assert (total.min, total.mean, total.p50, total.p95, total.max, total.sum) == (
        10,
        105.0,
        100,
        190,
        200,
        2100,
    )
    assert (report.supervised_tokens.min, report.supervised_tokens.max) == (1, 20)
    assert (report.truncated, report.dropped, report.length_summary()) == ([], [], None)


def test_over_long_rows_are_truncated_or_dropped_when_no_supervised_token_survives():
    examples = [chat(line, "q", "a") for line in (2, 4, 6, 8)]
    counts = {
        2: TokenCount(total=100, supervised=20, supervised_kept=20),  # fits
        4: TokenCount(total=300, supervised=50, supervised_kept=10),  # cut, still trains
        6: TokenCount(total=900, supervised=30, supervised_kept=0),  # answer entirely past max_length
        8: TokenCount(total=500, supervised=40, supervised_kept=5),
    }
    report = check_data(loaded(examples), count_tokens=fake_counter(counts), max_length=256)
    assert report.truncated == [4, 8]
    assert report.dropped == [6]
    assert report.length_summary() == (
        "2 rows will be truncated to max_length (256); "
        "1 rows would keep no supervised token after truncation and will be dropped"
    )


def test_label_distribution_and_conflicting_labels_on_the_same_text():
    examples = [
        text(1, "good", "pos"),
        text(2, "bad", "neg"),
        text(3, "fine", "pos"),
        text(4, "Good ", "neg"),
    ]
    report = check_data(loaded(examples, fmt="classification"))
    assert report.label_counts == {"pos": 2, "neg": 2}
    assert [str(w) for w in report.warnings] == [
        "line 1, field 'label': same text as line 4 but different labels: neg, pos"
    ]


def test_whitespace_only_answers_are_warnings_and_loading_warnings_are_kept():
    loading_warning = RowError(
        1, "messages", "ends with a 'user' turn; 1 turn(s) after the last answer dropped"
    )
    examples = [chat(1, "Hi", "Hello"), chat(2, "Hi?", "  \n")]
    report = check_data(loaded(examples, warnings=[loading_warning]))
    assert [str(w) for w in report.warnings] == [
        "line 1, field 'messages': ends with a 'user' turn; 1 turn(s) after the last answer dropped",
        "line 2: an assistant answer is only whitespace",
    ]
    assert report.ok


def test_row_errors_make_the_report_not_ok_and_survive_json():
    error = RowError(3, "messages", "required field is empty")
    data = loaded([chat(1, "Hi", "Hello")], errors=[error])
    data.n_rows = 2
    report = check_data(data)
    assert (report.ok, report.rows, report.valid_rows) == (False, 2, 1)
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ok"] is False
    assert as_json["errors"] == [{"line": 3, "field": "messages", "reason": "required field is empty"}]
    assert as_json["unit"] == "line"


def test_rendered_report_names_errors_duplicates_lengths_and_labels():
    examples = [text(2, "good", "pos"), text(3, "good", "pos"), text(4, "bad", "neg")]
    data = loaded(
        examples,
        fmt="classification",
        path="train.json",
        errors=[RowError(5, "label", "required field is missing")],
    )
    counts = {2: TokenCount(10, 1, 1), 3: TokenCount(10, 1, 1), 4: TokenCount(600, 1, 1)}
    console = Console(record=True, width=120)
    render_data_check(check_data(data, count_tokens=fake_counter(counts), max_length=512), console=console)
    output = console.export_text()
    assert "record 5, field 'label': required field is missing" in output
    assert "exact duplicates: 1 groups, 2 rows" in output
    assert "records 2, 3" in output
    assert "1 rows will be truncated to max_length (512)" in output
    assert "truncated: record 4" in output
    assert "│ pos   │    2 │ 66.7% │" in output
    assert "1 rows have errors and will be left out of training" in output
