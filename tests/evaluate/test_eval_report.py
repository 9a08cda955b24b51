"""`tunery report`: one self-contained HTML page with plots, tables and examples, and nothing fetched from outside."""

from __future__ import annotations

import base64
import re

from typer.testing import CliRunner

from tunery.cli import app
from tunery.evaluate.classification import evaluate_predictions
from tunery.evaluate.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


def embedded_images(html: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    ]


def external_references(html: str) -> list[str]:
    """Anything a browser would fetch: src/href that is not inline data, <link>, CSS url() or @import."""
    found = re.findall(r'(?:src|href)\s*=\s*"(?!data:)([^"]*)"', html)
    found += re.findall(r"<link\b[^>]*>", html) + re.findall(r"url\((?!data:)[^)]*\)|@import", html)
    return found


def test_the_report_embeds_curves_and_tables_and_references_nothing_outside(evaluated):
    run, evaluation = evaluated
    result = CliRunner().invoke(app, ["report", str(run.path)])
    assert result.exit_code == 0, result.output
    html = (run.path / "report.html").read_text()
    images = embedded_images(html)
    assert images and all(image.startswith(PNG) for image in images)
    assert external_references(html) == []
    for heading in ("<h2>Training</h2>", "<h2>Data</h2>", "<h2>Evaluation</h2>", "<h2>Config</h2>"):
        assert heading in html
    assert html.count("<table") >= 4  # training metrics, data, scores, examples
    assert "general text perplexity change (%)" in html and "format json" in html
    assert "item 0 quantity 0" in html  # a per-example comparison
    assert "&#34;item&#34;: 0" in html or "&quot;item&quot;: 0" in html  # answers are escaped text


def test_a_classification_report_shows_the_confusion_matrix_and_escapes_the_texts(tmp_path):
    (tmp_path / "config.yaml").write_text("data: {train: train.jsonl}\n")
    texts = ["<script>alert(1)</script>", "fine", "bad", "meh"]
    evaluate_predictions(tmp_path, ["a", "b", "b", "a"], ["a", "a", "b", "c"], name="test", texts=texts)
    html = write_report(tmp_path).read_text()
    assert "Confusion matrix" in html and len(embedded_images(html)) == 1  # no training history, one matrix
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert external_references(html) == []
