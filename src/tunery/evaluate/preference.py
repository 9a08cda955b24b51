"""Base versus tuned on held-out preference pairs: how often the chosen answer wins.

    summary = evaluate_preferences("runs/dpo", "pairs-valid.jsonl")
    summary["base"]["win_rate"], summary["tuned"]["win_rate"], summary["tuned"]["reward_accuracy"]

For each model, every pair's two sides are scored by their summed answer log-prob
(one packed row per batch, as in training). `win_rate` is the share of pairs whose
chosen answer has the higher log-prob, `win_rate_per_token` the same on the mean
log-prob per answer token (blind to length, as SimPO and ORPO see it). The tuned model
also gets DPO's implicit reward against the base, β·((tc − bc) − (tr − br)):
`reward_accuracy` is the share of pairs where it is positive, which is what a
preference run optimises and what its `val_reward_accuracy` logged. Base and tuned are
the same weights in memory (the adapter switched off for the base), so it costs one load.
Any causal-LM run (sft or preference) can be evaluated on a pairs file; results go to
`eval/<name>/` like every evaluation (results.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunery.data.preference import load_preferences_checked
from tunery.data.preference_tokens import EncodedPreference, encode_preferences
from tunery.errors import TuneryError
from tunery.evaluate.results import save_evaluation
from tunery.run import Run

EVAL_BATCH = 8  # pairs per packed row


class PreferenceEvalError(TuneryError, ValueError):
    """A preference file that cannot give a win rate (unpaired rows, or no pair left after truncation)."""

    code = "invalid_file"


@dataclass
class SideScores:
    """Per pair: summed answer log-prob of chosen and rejected, and their answer token counts."""

    chosen: list[float]
    rejected: list[float]
    chosen_tokens: list[int]
    rejected_tokens: list[int]


def evaluate_preferences(
    run_path: str | Path, data_path: str | Path, with_base: bool = True, limit: int | None = None,
    name: str | None = None,
) -> dict:  # fmt: skip
    """Score a run (and its base) on a pairs file, store it as evaluation `name`, return the summary."""
    from tunery.inference import load_run_model
    from tunery.nn.loss import causal_lm_parts

    run = Run.open(run_path)
    loaded = load_preferences_checked(data_path)
    if loaded.format != "paired":
        raise PreferenceEvalError(
            f"{data_path}: rows are unpaired (completion + label); a win rate needs chosen/rejected pairs"
        )
    model, tokenizer = load_run_model(run.path)
    encoded = encode_preferences(loaded.examples[:limit], tokenizer, run.config.data.max_length)
    pairs = [example for example in encoded.examples if isinstance(example, EncodedPreference)]
    if not pairs:
        raise PreferenceEvalError(
            f"{data_path}: no pair keeps an answer token on both sides after truncation to "
            f"data.max_length={run.config.data.max_length}"
        )
    parts = causal_lm_parts(model)
    tuned = score_sides(model, parts, pairs)
    base = None
    if with_base:
        with model.disable_adapter():
            base = score_sides(model, parts, pairs)
    beta = run.config.preference.beta
    summary = preference_summary(tuned, base, beta) | {
        "name": name or Path(data_path).stem, "data": str(data_path), "examples": len(pairs),
        "preference": {"beta": beta, "dropped_lines": encoded.dropped_lines,
                       "truncated_lines": encoded.truncated_lines},
    }  # fmt: skip
    rows = pair_rows(loaded.examples, pairs, tuned, base)
    folder = save_evaluation(run.path, summary["name"], summary, rows)
    run.update_record(evaluation={**summary, "folder": str(folder)})
    return summary


def score_sides(model, parts, pairs: Sequence[EncodedPreference], batch_size: int = EVAL_BATCH) -> SideScores:
    """Log-probs of both sides of every pair under `model` as it is now (no gradients, eval mode)."""
    import torch

    from tunery.nn.preference_loss import sequence_logps
    from tunery.tasks.preference_reference import collate_sides, shares_prompts

    device = next(model.parameters()).device
    share = shares_prompts(model)
    sums: list[float] = []
    counts: list[int] = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = {
                k: v.to(device) for k, v in collate_sides(pairs[start : start + batch_size], share).items()
            }
            logps, tokens = sequence_logps(model, parts, batch)
            sums += logps.double().tolist()
            counts += [int(n) for n in tokens.tolist()]
    return SideScores(sums[0::2], sums[1::2], counts[0::2], counts[1::2])


def preference_summary(tuned: SideScores, base: SideScores | None, beta: float) -> dict:
    """The `tuned` and `base` score dicts: win rates and log-probs; the tuned reward against the base."""
    tuned_scores = model_scores(tuned)
    if base is not None:
        margins = [
            beta * ((tc - bc) - (tr - br))
            for tc, tr, bc, br in zip(tuned.chosen, tuned.rejected, base.chosen, base.rejected, strict=True)
        ]
        tuned_scores["reward_accuracy"] = _share(m > 0 for m in margins)
        tuned_scores["reward_margin"] = _mean(margins)
    return {"tuned": tuned_scores, "base": model_scores(base) if base is not None else None}


def model_scores(scores: SideScores) -> dict:
    """One model's win rate (summed and per-token log-prob), mean margin and mean log-prob of each side."""
    per_token = [
        (c / nc) - (r / nr)
        for c, r, nc, nr in zip(scores.chosen, scores.rejected, scores.chosen_tokens, scores.rejected_tokens,
                                strict=True)
    ]  # fmt: skip
    margins = [c - r for c, r in zip(scores.chosen, scores.rejected, strict=True)]
    return {
        "win_rate": _share(m > 0 for m in margins),
        "win_rate_per_token": _share(m > 0 for m in per_token),
        "logp_margin": _mean(margins),
        "logps_chosen": _mean(scores.chosen),
        "logps_rejected": _mean(scores.rejected),
    }


def pair_rows(
    examples, pairs: Sequence[EncodedPreference], tuned: SideScores, base: SideScores | None
) -> list:
    """One row per pair for a person to read: the prompt, the chosen answer, each model's margin."""
    by_line = {example.line: example for example in examples}
    rows = []
    for i, pair in enumerate(pairs):
        example = by_line[pair.line]
        margins = {"tuned": tuned.chosen[i] - tuned.rejected[i]}
        if base is not None:
            margins["base"] = base.chosen[i] - base.rejected[i]
        rows.append({
            "line": pair.line, "prompt": _prompt_text(example.prompt), "reference": example.chosen,
            "rejected": example.rejected, "base": _verdict(margins.get("base")), "tuned": _verdict(margins["tuned"]),
            "scores": {model: {"win": float(m > 0), "logp_margin": m} for model, m in margins.items()},
        })  # fmt: skip
    return rows


def _verdict(margin: float | None) -> str | None:
    if margin is None:
        return None
    return f"{'chosen' if margin > 0 else 'rejected'} wins (log-prob margin {margin:+.3f})"


def _prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else (prompt[-1].content if prompt else "")


def _share(flags) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 6) if values else 0.0


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0
