"""The blind review's statistics against values worked out by hand (docs/review.md shows the formulas)."""

from __future__ import annotations

import pytest

from tunery.evaluate.pairwise import (
    agreement,
    bradley_terry,
    pair_tallies,
    wilson_interval,
    win_matrix,
)


def test_wilson_interval_of_7_wins_in_10():
    low, high = wilson_interval(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)


def test_wilson_interval_stays_inside_0_and_1_at_the_edges():
    # 0 of 10: centre z^2/2n, spread z^2/2n, so the low end is exactly 0 and the high end (z^2/n)/(1 + z^2/n)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.27753, abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((1 - 0.27753, 1.0), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_wider_confidence_gives_a_wider_interval():
    narrow, wide = wilson_interval(7, 10, 0.90), wilson_interval(7, 10, 0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_wilson_interval_refuses_more_successes_than_trials():
    with pytest.raises(ValueError, match="successes must lie in"):
        wilson_interval(11, 10)


def test_tallies_count_each_pair_once_whichever_way_round_it_was_shown():
    outcomes = [("a", "b", "x"), ("b", "a", "x"), ("b", "a", "y"), ("a", "b", "tie"), ("b", "a", "both_bad")]
    (ab, ac, bc) = pair_tallies(["a", "b", "c"], outcomes)
    assert (ab.first, ab.second) == ("a", "b")
    assert (ab.first_wins, ab.second_wins, ab.ties, ab.both_bad, ab.n) == (2, 1, 1, 1, 5)
    assert ab.win_rate == pytest.approx((2 + 1) / 5)  # tie and both-bad count half each
    assert ac.n == 0 and ac.win_rate is None and bc.n == 0


def test_an_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        pair_tallies(["a", "b"], [("a", "b", "maybe")])


def test_two_models_bradley_terry_is_the_win_share():
    outcomes = [("a", "b", "x")] * 3 + [("a", "b", "y")]
    assert bradley_terry(["a", "b"], outcomes, prior=0) == pytest.approx({"a": 0.75, "b": 0.25}, abs=1e-10)
    # with the prior: 0.1 virtual tied games, half a win each way (3.05 of 4.1)
    assert bradley_terry(["a", "b"], outcomes)["a"] == pytest.approx(3.05 / 4.1, abs=1e-10)


def test_a_chain_solved_by_hand():
    """a beats b 2-1 and b beats c 2-1, a and c never meet: each edge gives p/(p+q) = 2/3, so (4, 2, 1)/7."""
    outcomes = [
        ("a", "b", "x"),
        ("a", "b", "x"),
        ("a", "b", "y"),
        ("b", "c", "x"),
        ("b", "c", "x"),
        ("c", "b", "x"),
    ]
    scores = bradley_terry(["a", "b", "c"], outcomes, prior=0)
    assert scores == pytest.approx({"a": 4 / 7, "b": 2 / 7, "c": 1 / 7}, abs=1e-10)


def test_a_symmetric_cycle_gives_equal_strengths():
    outcomes = [("a", "b", "x"), ("a", "b", "x"), ("b", "a", "x")]
    outcomes += [("b", "c", "x"), ("b", "c", "x"), ("c", "b", "x")]
    outcomes += [("c", "a", "x"), ("c", "a", "x"), ("a", "c", "x")]
    assert bradley_terry(["a", "b", "c"], outcomes, prior=0) == pytest.approx(dict.fromkeys("abc", 1 / 3))


def test_the_scores_solve_the_likelihood_equations():
    """At the maximum, each model's wins equal its expected wins: W_i = sum_j n_ij p_i / (p_i + p_j)."""
    models = ["a", "b", "c"]
    outcomes = [("a", "b", "x")] * 5 + [("b", "a", "x")] * 2 + [("a", "c", "tie")] * 3 + [("c", "b", "x")] * 4
    outcomes += [("b", "c", "x"), ("a", "c", "y"), ("a", "c", "both_bad")]
    scores = bradley_terry(models, outcomes)
    p = [scores[m] for m in models]
    w = win_matrix(models, outcomes, prior=0.1)
    for i in range(3):
        expected = sum((w[i][j] + w[j][i]) * p[i] / (p[i] + p[j]) for j in range(3) if j != i)
        assert abs(sum(w[i]) - expected) < 1e-9
    assert sum(p) == pytest.approx(1.0) and scores["c"] > scores["a"] > scores["b"]


def test_an_undefeated_model_gets_a_finite_score_from_the_prior():
    scores = bradley_terry(["a", "b"], [("a", "b", "x")] * 5)
    assert scores["a"] / scores["b"] == pytest.approx(5.05 / 0.05, rel=1e-8)
    with pytest.raises(ValueError, match="give a prior"):
        bradley_terry(["a", "b"], [("a", "b", "x")] * 5, prior=0)


def test_agreement_of_two_raters_by_hand():
    """Pairs agree on items 1 and 3 (2/3); categories are half and half, so chance agreement is 1/2
    and kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3. Item 4 has one rating and is left out."""
    found = agreement({"1": ["x", "x"], "2": ["x", "y"], "3": ["y", "y"], "4": ["tie"]})
    assert (found.items, found.ratings) == (3, 6)
    assert found.percent == pytest.approx(2 / 3) and found.fleiss_kappa == pytest.approx(1 / 3)


def test_agreement_with_three_raters_on_an_item():
    """Item 1: x, x, y agree in 1 of 3 pairs; item 2: tie, tie in 1 of 1. Pooled shares x 2/5, y 1/5,
    tie 2/5: chance 9/25. kappa = (2/3 - 9/25) / (16/25) = 23/48."""
    found = agreement({"1": ["x", "x", "y"], "2": ["tie", "tie"]})
    assert found.percent == pytest.approx(2 / 3)
    assert found.fleiss_kappa == pytest.approx(23 / 48)


def test_agreement_is_undefined_without_shared_items_or_with_one_category():
    assert agreement({"1": ["x"]}).fleiss_kappa is None and agreement({}).percent is None
    unanimous = agreement({"1": ["x", "x"], "2": ["x", "x"]})
    assert unanimous.percent == 1.0 and unanimous.fleiss_kappa is None
