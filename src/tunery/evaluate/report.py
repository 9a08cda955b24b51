"""One self-contained HTML page about a run: config, data, training curves, evaluations, examples.

Everything is inside the file (CSS inline, plots as base64 PNG), so it can be
mailed, attached to a ticket or opened offline. The page is a Jinja2 template
(`report.html.j2`) with autoescaping on: prompts and answers are shown as text,
never run as HTML.

    write_report("runs/demo")  # -> runs/demo/report.html
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tunery.evaluate.results import load_evaluations, load_examples
from tunery.run import Run

LOWER_IS_BETTER = {"loss", "perplexity", "general_perplexity"}
NEUTRAL = {"response_chars", "response_tokens", "logps_chosen", "logps_rejected"}
SCORE_ORDER = (
    "loss", "perplexity", "general_perplexity", "exact_match", "rouge1", "rouge2", "rougeL", "bleu", "chrf",
    "accuracy", "macro_f1", "micro_f1", "response_chars", "response_tokens",
    "win_rate", "win_rate_per_token", "reward_accuracy", "reward_margin", "logp_margin", "logps_chosen",
    "logps_rejected",
)  # fmt: skip


def write_report(run_path: str | Path, out: str | Path | None = None, samples: int = 8) -> Path:
    """Write the report (default `<run>/report.html`) and return its path."""
    run = Run.open(run_path)
    out = Path(out) if out else run.path / "report.html"
    out.write_text(render_report(run, samples), encoding="utf-8")
    return out


def render_report(run: Run, samples: int = 8) -> str:
    from tunery.evaluate.plots import training_curves

    record, history = run.record, run.history()
    context = {
        "name": run.name,
        "path": str(run.path),
        "record": record,
        "metrics": record["metrics"],
        "curves": _b64(training_curves(history, record["metrics"].get("best_step"))) if history else None,
        "auto": (record.get("auto") or {}).get("choices") or [],
        "lr_curve": lr_curve_png(record.get("auto") or {}),
        "data_rows": data_rows(record["data"]),
        "evaluations": [
            evaluation_view(name, summary, load_examples(run.path, name)[:samples])
            for name, summary in load_evaluations(run.path).items()
        ],
        "config": (run.path / "config.yaml").read_text(encoding="utf-8"),
    }
    return _template().render(**context)


def lr_curve_png(auto: dict) -> str | None:
    """The range test of train.lr: auto as a base64 PNG, None when no test ran (lr set, or skipped)."""
    from tunery.evaluate.plots import lr_range_curve

    if not auto.get("curve"):
        return None
    chosen = auto.get("resolved", {}).get("lr")
    return _b64(lr_range_curve(auto["curve"], chosen if isinstance(chosen, float) else None))


def data_rows(data: dict) -> list[dict]:
    """One row per data set (train, validation): its file and its token statistics."""
    rows = []
    for role, source in data.get("sources", {}).items():
        stats = data.get(role) or {}
        rows.append(
            {
                "role": role,
                "path": source.get("path"),
                "format": source.get("format"),
                "rows": source.get("rows"),
                "examples": stats.get("examples"),
                "tokens": stats.get("tokens"),
                "supervised_tokens": stats.get("supervised_tokens"),
                "truncated": len(stats.get("truncated_lines") or []),
                "dropped": len(stats.get("dropped_lines") or []),
            }
        )
    return rows


def evaluation_view(name: str, summary: dict, examples: list[dict]) -> dict:
    """What the template shows of one evaluation: metric rows base/tuned/change, confusion matrix, examples."""
    from tunery.evaluate.plots import confusion_matrix

    base, tuned = summary.get("base") or {}, summary.get("tuned") or {}
    classification = summary.get("classification")
    return {
        "name": name,
        "data": summary.get("data"),
        "examples": summary.get("examples"),
        "has_base": bool(base),
        "rows": score_rows(base, tuned) + forgetting_rows(summary.get("forgetting") or {}),
        "confusion": _b64(confusion_matrix(classification["labels"], classification["confusion"]))
        if classification
        else None,
        "per_class": classification["per_class"] if classification else {},
        "samples": examples,
    }


def score_rows(base: dict, tuned: dict) -> list[dict]:
    names = [n for n in SCORE_ORDER if tuned.get(n) is not None]
    names += [n for n, v in tuned.items() if "/" in n and isinstance(v, int | float)]  # lm-eval's task/metric
    rows = [_row(name, base.get(name), tuned[name]) for name in names]
    formats = tuned.get("formats") or {}
    rows += [_row(f"format {n}", (base.get("formats") or {}).get(n), formats[n]) for n in formats]
    return rows


def forgetting_rows(forgetting: dict) -> list[dict]:
    change = forgetting.get("change_percent")
    if change is None:
        return []
    verdict = "worse" if change > 5 else "better" if change < -5 else ""
    return [{"metric": "general text perplexity change (%)", "base": None, "tuned": None, "change": change,
             "verdict": verdict}]  # fmt: skip


def _row(metric: str, base, tuned) -> dict:
    change = None if base is None or tuned is None else tuned - base
    verdict = ""
    if change and metric not in NEUTRAL:
        improved = change < 0 if metric in LOWER_IS_BETTER else change > 0
        verdict = "better" if improved else "worse"
    return {"metric": metric, "base": base, "tuned": tuned, "change": change, "verdict": verdict}


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):  # bools too
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("tunery.evaluate", ""), autoescape=select_autoescape(["j2", "html"])
    )
    environment.filters["fmt"] = _fmt
    return environment.get_template("report.html.j2")


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")
