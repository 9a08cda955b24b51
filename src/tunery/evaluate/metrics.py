"""Scores of generated answers against references: exact match, ROUGE, BLEU, chrF, length.

ROUGE comes from rouge-score (Google's reference implementation), BLEU and chrF
from sacrebleu, so the numbers are the ones papers report. Their conventions are
kept: ROUGE is an F1 between 0 and 1, BLEU and chrF are between 0 and 100.
rouge-score's tokenizer keeps only ASCII letters and digits, so ROUGE means
little on other scripts; chrF works on characters and suits them better.

    corpus_scores(["the cat sat"], ["the cat sat on the mat"])["rouge1"]  # 0.6667
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def exact_match(answers: list[str], references: list[str]) -> float | None:
    """Share of answers equal to their reference, ignoring surrounding whitespace."""
    if not references:
        return None
    return sum(_same(a, r) for a, r in zip(answers, references, strict=True)) / len(references)


def rouge(answer: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of one answer."""
    scores = _rouge_scorer().score(reference, answer)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def bleu(answers: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenizer, exponential smoothing), 0 to 100."""
    import sacrebleu

    return sacrebleu.corpus_bleu(answers, [references]).score


def chrf(answers: list[str], references: list[str]) -> float:
    """Corpus chrF (character 6-grams, beta 2), 0 to 100."""
    import sacrebleu

    return sacrebleu.corpus_chrf(answers, [references]).score


def answer_scores(answer: str, reference: str) -> dict[str, float]:
    """Scores of one answer, for the per-example file: exact, ROUGE, sentence chrF, length."""
    import sacrebleu

    return {
        "exact": float(_same(answer, reference)),
        **rouge(answer, reference),
        "chrf": sacrebleu.sentence_chrf(answer, [reference]).score,
        "chars": len(answer),
    }


def corpus_scores(answers: list[str], references: list[str]) -> dict[str, float | None]:
    """Scores of a set of answers: exact match, mean ROUGE F1s, corpus BLEU and chrF, mean length."""
    if not references:
        return {}
    per_answer = [rouge(a, r) for a, r in zip(answers, references, strict=True)]
    return {
        "exact_match": exact_match(answers, references),
        **{name: mean([scores[name] for scores in per_answer]) for name in ROUGE_TYPES},
        "bleu": bleu(answers, references),
        "chrf": chrf(answers, references),
        "response_chars": mean([len(a) for a in answers]),
    }


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _same(answer: str, reference: str) -> bool:
    return answer.strip() == reference.strip()


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    # No stemmer: a Porter stemmer only helps English and makes scores depend on nltk's version.
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
