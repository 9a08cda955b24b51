"""Each preference loss against a value computed by hand (float64, 1e-8), and the packed pair's log-probs."""

from __future__ import annotations

import math

import pytest
import torch

from tunery.nn.preference_loss import dpo_loss, ipo_loss, kto_loss, orpo_loss, simpo_loss

TOL = 1e-8


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_dpo_matches_hand_computed_value_with_and_without_label_smoothing():
    # h = (pc - rc) - (pr - rr) = (-10 + 11) - (-12 + 11.5) = 1.5; beta 0.1 -> 0.15
    terms = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.5), beta=0.1)
    assert terms.losses.item() == pytest.approx(-log_sigmoid(0.15), abs=TOL)
    assert terms.chosen_rewards.item() == pytest.approx(0.1, abs=TOL)
    assert terms.rejected_rewards.item() == pytest.approx(-0.05, abs=TOL)
    smoothed = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.5), beta=0.1, label_smoothing=0.2)
    expected = -0.8 * log_sigmoid(0.15) - 0.2 * log_sigmoid(-0.15)
    assert smoothed.losses.item() == pytest.approx(expected, abs=TOL)


def test_ipo_matches_hand_computed_value():
    # h = 1.5, beta 0.25 -> (1.5 - 2)^2 = 0.25
    assert ipo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.5), beta=0.25).losses.item() == pytest.approx(
        0.25, abs=TOL
    )


def test_simpo_matches_hand_computed_value():
    # beta (ac - ar) - gamma = 2 * (-0.5 + 1.25) - 0.5 = 1.0
    terms = simpo_loss(t(-0.5), t(-1.25), beta=2.0, gamma=0.5)
    assert terms.losses.item() == pytest.approx(-log_sigmoid(1.0), abs=TOL)
    assert terms.chosen_rewards.item() == pytest.approx(-1.0, abs=TOL)


def test_orpo_matches_hand_computed_value():
    ac, ar, lam = -0.5, -1.25, 0.1
    odds = lambda a: a - math.log(1 - math.exp(a))  # noqa: E731
    expected = 0.5 - lam * log_sigmoid(odds(ac) - odds(ar))
    assert orpo_loss(t(ac), t(ar), beta=0.1, orpo_lambda=lam).losses.item() == pytest.approx(
        expected, abs=TOL
    )


def test_kto_matches_hand_computed_value_with_the_batch_kl_estimate():
    policy, reference = t(-10.0, -12.0), t(-11.0, -11.0)  # ratios +1, -1 -> mean 0 -> z = 0
    terms = kto_loss(policy, reference, torch.tensor([True, False]), beta=0.5,
                     desirable_weight=1.5, undesirable_weight=0.5)  # fmt: skip
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert terms.losses[0].item() == pytest.approx(1.5 * (1 - sigmoid(0.5)), abs=TOL)
    assert terms.losses[1].item() == pytest.approx(0.5 * (1 - sigmoid(0.5)), abs=TOL)
    shifted = kto_loss(t(-10.0, -10.0), t(-11.0, -11.5), torch.tensor([True, False]), beta=1.0)
    z = 1.25  # mean of the ratios 1 and 1.5, positive so kept
    assert shifted.losses[0].item() == pytest.approx(1 - sigmoid(1 - z), abs=TOL)
    assert shifted.losses[1].item() == pytest.approx(1 - sigmoid(z - 1.5), abs=TOL)


def test_the_losses_fall_when_the_chosen_answer_gains_probability():
    before = dpo_loss(t(-10.0), t(-10.0), t(-10.0), t(-10.0), beta=0.1).losses
    after = dpo_loss(t(-9.0), t(-10.0), t(-10.0), t(-10.0), beta=0.1).losses
    assert before.item() == pytest.approx(math.log(2), abs=TOL) and after.item() < before.item()
