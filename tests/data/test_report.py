"""The quality and bias report: each finding fires on a crafted file and stays quiet on a clean one."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tests.data.conftest import qa
from tunery.data.formats import load_examples
from tunery.data.language import guess_language
from tunery.data.pii import find_personal_data
from tunery.data.report import quality_report

CLEAN = [
    qa("What is the capital of France?", "The capital of France is Paris."),
    qa("How many legs does a spider have?", "A spider has eight legs."),
    qa("Which planet is closest to the sun?", "Mercury is the planet closest to the sun."),
    qa("What do bees make?", "Bees make honey and wax."),
    qa("Who wrote Hamlet?", "The play Hamlet was written by William Shakespeare."),
]


def report_on(tmp_path, rows, against=None, **kwargs):
    data = load_examples(write_jsonl(tmp_path / "train.jsonl", rows))
    holdouts = [
        load_examples(write_jsonl(tmp_path / f"holdout{i}.jsonl", r)) for i, r in enumerate(against or [])
    ]
    return quality_report(data, against=holdouts, **kwargs)


def finding(report, code):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, f"expected one '{code}' finding, got {report.codes()}"
    return found[0]


def test_a_clean_file_has_no_findings(tmp_path):
    report = report_on(tmp_path, CLEAN, against=[[qa("What colour is the sky?", "The sky is blue.")]])
    assert report.findings == []
    assert report.languages == {"en": 5}


def test_every_finding_has_a_severity_count_lines_and_an_effect(tmp_path):
    rows = [*CLEAN, qa("What is the capital of France?", "Lyon"), qa("mail ada@example.com", "ok, I will")]
    for f in report_on(tmp_path, rows).findings:
        assert f.severity in ("high", "medium", "low") and f.count > 0 and f.lines and f.effect


def test_the_same_prompt_with_different_answers_is_a_conflict(tmp_path):
    report = report_on(tmp_path, [*CLEAN, qa("what is the capital of  France?", "Lyon")])
    conflict = finding(report, "conflicting")
    assert (conflict.severity, conflict.count, conflict.lines) == ("high", 2, [1, 6])


def test_rows_shared_with_a_validation_file_are_leakage(tmp_path):
    holdout = [
        qa("Who wrote Hamlet?", "The play Hamlet was written by William Shakespeare!"),  # near line 5
        qa("What is the capital of France?", "The capital of France is Paris."),  # exact, line 1
        qa("What colour is the sky?", "The sky is blue."),
    ]
    leak = finding(report_on(tmp_path, CLEAN, against=[holdout]), "leakage")
    assert (leak.severity, leak.count, leak.lines) == ("high", 2, [1, 5])
    assert "rows: 1, 2" in leak.detail


@pytest.mark.parametrize(
    ("text", "code", "severity"),
    [
        ("Write to ada.lovelace@example.org about it", "emails", "medium"),
        ("Call me on +44 20 7946 0958 tomorrow", "phones", "medium"),
        ("my key is AKIAIOSFODNN7EXAMPLE, use it", "secrets", "high"),
        ("config: api_key = 'sk_live_51Habcdefgh'", "secrets", "high"),
    ],
)
def test_personal_data_is_flagged_with_its_line(tmp_path, text, code, severity):
    report = report_on(tmp_path, [*CLEAN, qa(text, "Noted, thank you.")])
    found = finding(report, code)
    assert (found.severity, found.lines) == (severity, [6])


def test_dates_prices_and_order_numbers_are_not_phone_numbers():
    assert find_personal_data("Order 20240115 shipped on 2024-01-15 for 1,299.00 EUR, 3 x 12 boxes") == {}


@pytest.mark.parametrize("answer", ["   ", "N/A", "TODO", "...", "Lorem ipsum"])
def test_empty_or_placeholder_answers_are_flagged(tmp_path, answer):
    empty = finding(report_on(tmp_path, [*CLEAN, qa("Describe a cat.", answer)]), "empty-answers")
    assert (empty.severity, empty.lines) == ("high", [6])


def test_answers_that_repeat_the_prompt_are_flagged(tmp_path):
    rows = [*CLEAN, qa("Translate into French: good morning", "translate into french: Good morning")]
    copied = finding(report_on(tmp_path, rows), "copied-answers")
    assert copied.lines == [6]


def test_a_mix_of_languages_is_reported_with_shares(tmp_path):
    german = [
        qa(f"Wo ist der Bahnhof Nummer {i}? Ich will in die Stadt.", "Er ist nicht weit.") for i in range(2)
    ]
    mix = finding(report_on(tmp_path, [*CLEAN, *german]), "language-mix")
    assert mix.detail == "en 71%, de 29%"
    assert mix.count == 2


def test_language_guesses_by_script_and_function_words():
    assert guess_language("Where is the station? I want to go to the city.") == "en"
    assert guess_language("¿Dónde está la estación? Quiero ir a la ciudad.") == "es"
    assert guess_language("Где вокзал?") == "cyrillic"
    assert guess_language("42 17") == "unknown"


def classified(texts_and_labels):
    return [{"text": text, "label": label} for text, label in texts_and_labels]


def test_label_imbalance_suggests_class_weights_and_resampling(tmp_path):
    rows = classified([(f"great product number {i}", "positive") for i in range(12)])
    rows += classified([(f"broken on arrival {i}", "negative") for i in range(3)])
    imbalance = finding(report_on(tmp_path, rows), "label-imbalance")
    assert imbalance.severity == "medium" and imbalance.count == 3
    assert imbalance.lines == [13, 14, 15]
    assert "negative: 2.50, positive: 0.62" in imbalance.detail
    assert "oversample 'negative' to 12 rows" in imbalance.detail


def test_a_tenfold_imbalance_is_high_severity(tmp_path):
    rows = classified([(f"fine {i}", "a") for i in range(20)] + [("bad", "b"), ("worse", "b")])
    assert finding(report_on(tmp_path, rows), "label-imbalance").severity == "high"


def test_length_that_predicts_the_label_is_flagged_and_tabled(tmp_path):
    rows = classified([(f"short {i}", "spam") for i in range(6)])
    rows += classified([(f"a much longer and more careful message number {i}", "ham") for i in range(6)])
    report = report_on(tmp_path, rows)
    assert finding(report, "length-by-label").severity == "medium"
    assert report.length_by_label["spam"] == {"rows": 6, "mean": 2.0, "p50": 2, "max": 2}


def test_labels_of_chat_rows_come_from_a_field_the_caller_names(tmp_path):
    rows = [qa(f"question {i}", f"answer {i}") for i in range(8)]
    labels = {line: ("billing" if line <= 7 else "refund") for line in range(1, 9)}
    report = report_on(tmp_path, rows, labels=labels)
    assert finding(report, "label-imbalance").lines == [8]
    assert report.label_counts == {"billing": 7, "refund": 1}


def test_balanced_labels_of_similar_length_give_no_label_findings(tmp_path):
    rows = classified(
        [(f"good thing {i}", "pos") for i in range(6)] + [(f"bad thing {i}", "neg") for i in range(6)]
    )
    assert report_on(tmp_path, rows).findings == []


def test_duplicates_within_the_set_are_low_severity(tmp_path):
    exact = finding(report_on(tmp_path, [*CLEAN, CLEAN[0]]), "exact-duplicates")
    assert (exact.severity, exact.lines) == ("low", [6])


def test_augmented_rows_are_counted_per_strategy(tmp_path):
    report = report_on(tmp_path, CLEAN, origins={4: "swap", 5: "synonym"})
    assert report.augmented == {"swap": 1, "synonym": 1}


def test_the_rendered_report_shows_what_was_checked_and_each_finding(tmp_path):
    from rich.console import Console

    from tunery.cli.render_data import render_quality_report

    rows = [*CLEAN, qa("what is the capital of  France?", "Lyon")]
    console = Console(record=True, width=120)
    render_quality_report(report_on(tmp_path, rows), console)
    output = console.export_text()
    assert "Quality report: " in output and "(chat, 6 rows)" in output
    assert "skipped: leakage: no validation/test file given (--against)" in output
    assert "[high] same prompt, different answers (2)" in output
    assert "  lines: 1, 6" in output
    assert "1 high, 0 medium, 0 low severity findings" in output
