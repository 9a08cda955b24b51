"""Each generation metric against values worked out by hand on small fixed inputs."""

from __future__ import annotations

import pytest

from tunery.evaluate.metrics import answer_scores, bleu, chrf, corpus_scores, exact_match, rouge


def test_exact_match_ignores_surrounding_whitespace_only():
    assert exact_match(["Paris", " 42 \n", "no"], ["Paris", "42", "No"]) == pytest.approx(2 / 3)
    assert exact_match([], []) is None


def test_rouge_of_a_prefix_of_the_reference():
    # answer "the cat sat" vs reference "the cat sat on the mat":
    # ROUGE-1: P = 3/3, R = 3/6 -> F = 2/3;  ROUGE-2: P = 2/2, R = 2/5 -> F = 4/7;  ROUGE-L: LCS 3 -> F = 2/3
    scores = rouge("the cat sat", "the cat sat on the mat")
    assert scores == pytest.approx({"rouge1": 2 / 3, "rouge2": 4 / 7, "rougeL": 2 / 3})


def test_bleu_is_the_geometric_mean_of_ngram_precisions():
    # "the cat sat on a mat" vs "the cat sat on the mat", same length so no brevity penalty:
    # 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3 -> (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** (1/4)
    assert bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) == pytest.approx(100 * (1 / 12) ** 0.25)


def test_chrf_averages_character_ngram_precision_and_recall():
    # "ab" vs "abc": 1-grams P 2/2 R 2/3, 2-grams P 1/1 R 1/2 (3-grams: none in the answer, skipped)
    # mean P = 1, mean R = 7/12, F(beta=2) = 5 * P * R / (4 * P + R) = 7/11
    assert chrf(["ab"], ["abc"]) == pytest.approx(700 / 11)


def test_corpus_scores_combine_the_metrics_over_a_set():
    scores = corpus_scores(["the cat sat", "yes"], ["the cat sat on the mat", "yes"])
    assert scores["exact_match"] == 0.5
    assert scores["rouge1"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["response_chars"] == (11 + 3) / 2
    assert set(scores) == {"exact_match", "rouge1", "rouge2", "rougeL", "bleu", "chrf", "response_chars"}
    assert corpus_scores([], []) == {}


def test_answer_scores_describe_one_example():
    scores = answer_scores("ab", "abc")
    assert scores["exact"] == 0.0 and scores["chars"] == 2
    assert scores["chrf"] == pytest.approx(700 / 11)
