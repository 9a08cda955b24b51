"""`tunery data check` on a preference file: the report of data/preference_check.py on a terminal."""

from __future__ import annotations

import json

from tunery.data.load import numbered_rows


def check_preference_file(path: str, model: str | None, max_length: int, as_json: bool) -> int:
    """Print the preference report (JSON or lines); returns the exit code, 1 when a row has an error."""
    from tunery.data.preference import load_preferences
    from tunery.data.preference_check import check_preferences

    tokenizer = None
    if model:
        from tunery.data.tokenize import ensure_chat_template
        from tunery.models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(model))
        ensure_chat_template(tokenizer)
    report = check_preferences(load_preferences(path), tokenizer, max_length if tokenizer else None)
    print(json.dumps(report.to_dict(), indent=2, default=str) if as_json else "\n".join(report_lines(report)))
    return 0 if report.ok else 1


def report_lines(report) -> list[str]:
    lines = [
        f"{report.path}: preference data ({report.format}), {report.valid_rows} of {report.rows} rows valid"
    ]
    lines += [f"  error   {report.unit} {e.line}" + (f", field '{e.field}'" if e.field else "") + f": {e.reason}"
              for e in report.errors]  # fmt: skip
    lines += [f"  warning {w.reason}" if not w.line else f"  warning {report.unit} {w.line}: {w.reason}"
              for w in report.warnings]  # fmt: skip
    for group in report.exact_duplicates:
        lines.append(f"  duplicate {numbered_rows(report.unit, group)}")
    for name in ("prompt_tokens", "chosen_tokens", "rejected_tokens"):
        stats = getattr(report, name)
        if stats is not None:
            lines.append(
                f"  {name.replace('_', ' ')}: min {stats.min}, p50 {stats.p50}, p95 {stats.p95}, max {stats.max}"
            )
    if report.chosen_longer_share is not None:
        lines.append(f"  chosen longer than rejected in {report.chosen_longer_share:.0%} of pairs "
                     f"(mean difference {report.mean_length_difference} {report.length_unit})")  # fmt: skip
    if report.desirable_rows is not None:
        lines.append(f"  desirable rows: {report.desirable_rows} of {report.valid_rows}")
    lines.append("ok" if report.ok else f"{len(report.errors)} row(s) with errors")
    return lines
