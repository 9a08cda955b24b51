"""Statistics of pairwise (A/B) judgements: win rates with Wilson intervals, a Bradley–Terry ranking,
and agreement between raters. Pure Python, no torch, no numpy: a blind review has at most a few
thousand votes, and these are the few formulas it needs.

    wilson_interval(7, 10)                             # (0.3968, 0.8922): 7 wins of 10, 95%
    tally = pair_tallies(["a", "b", "c"], outcomes)    # wins, losses, ties per unordered pair
    bradley_terry(["a", "b", "c"], outcomes)           # {"a": 0.52, "b": 0.31, "c": 0.17}
    agreement({"item-1": ["first", "first"], "item-2": ["first", "tie"]})

An outcome is `(model_x, model_y, verdict)` with verdict one of `x` (x is better), `y`, `tie` and
`both_bad`. Conventions (docs/review.md says the same):

- **Ties count half.** A tie and a "both bad" are each half a win for both sides in the win rate
  and in Bradley–Terry (neither answer was preferred); the tallies keep them apart, so a result
  table can show them.
- **Wilson score interval**, not the normal approximation: it stays inside [0, 1] and is honest for
  small counts and for rates near 0 or 1 (Wilson 1927; Brown, Cai & DasGupta 2001). With half-wins
  the success count is fractional; the formula takes it as it is.
- **Bradley–Terry by minorization–maximization** (Hunter 2004, "MM algorithms for generalized
  Bradley–Terry models"): `p_i <- W_i / sum_j n_ij / (p_i + p_j)`, normalised to sum 1, which raises
  the likelihood at every step. A model that never lost (or never won) has no finite maximum, so a
  prior of `PRIOR_GAMES` virtual games per pair of models, each a tie, is added first: scores stay
  finite, a pair never compared gets a weak pull towards equal strength, and with real votes in
  the tens the prior changes scores only in the second decimal.
- **Agreement** is over items judged by two or more raters: the mean share of agreeing rater pairs
  per item (percent agreement) and Fleiss' kappa with a varying number of raters per item (Fleiss
  1971; expected agreement from the pooled category shares). Kappa is None when it is undefined
  (every rating in one category).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

VERDICTS = ("x", "y", "tie", "both_bad")
PRIOR_GAMES = 0.1  # virtual tied games per pair of models (Bradley–Terry's prior)
Outcome = tuple[str, str, str]  # (model_x, model_y, verdict)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a rate of `successes` in `n` trials; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: got {successes} of {n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / n
    centre = rate + z * z / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


@dataclass(frozen=True)
class PairTally:
    """The votes between two models; `first` is the one listed first in the models given."""

    first: str
    second: str
    first_wins: int = 0
    second_wins: int = 0
    ties: int = 0
    both_bad: int = 0

    @property
    def n(self) -> int:
        return self.first_wins + self.second_wins + self.ties + self.both_bad

    @property
    def first_score(self) -> float:
        """Wins of `first` with every tie and "both bad" counted half."""
        return self.first_wins + (self.ties + self.both_bad) / 2

    @property
    def win_rate(self) -> float | None:
        return self.first_score / self.n if self.n else None

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return wilson_interval(self.first_score, self.n, confidence)


def pair_tallies(models: Sequence[str], outcomes: Iterable[Outcome]) -> list[PairTally]:
    """One tally per unordered pair of `models` (in their order), pairs with no votes included."""
    order = {model: i for i, model in enumerate(models)}
    counts = {pair: [0, 0, 0, 0] for pair in itertools.combinations(models, 2)}
    for x, y, verdict in outcomes:
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict '{verdict}': use one of {', '.join(VERDICTS)}")
        flipped = order[x] > order[y]
        pair = (y, x) if flipped else (x, y)
        if verdict in ("x", "y"):
            first_won = (verdict == "x") != flipped
            counts[pair][0 if first_won else 1] += 1
        else:
            counts[pair][2 if verdict == "tie" else 3] += 1
    return [PairTally(a, b, *count) for (a, b), count in counts.items()]


def win_matrix(models: Sequence[str], outcomes: Iterable[Outcome], prior: float = 0.0) -> list[list[float]]:
    """`w[i][j]`: games model i won against model j, ties and "both bad" as half a win each way,
    plus `prior` virtual tied games per pair."""
    index = {model: i for i, model in enumerate(models)}
    wins = [[0.0 if i == j else prior / 2 for j in range(len(models))] for i in range(len(models))]
    for x, y, verdict in outcomes:
        i, j = index[x], index[y]
        if verdict == "x":
            wins[i][j] += 1
        elif verdict == "y":
            wins[j][i] += 1
        elif verdict in ("tie", "both_bad"):
            wins[i][j] += 0.5
            wins[j][i] += 0.5
        else:
            raise ValueError(f"unknown verdict '{verdict}': use one of {', '.join(VERDICTS)}")
    return wins


def bradley_terry(
    models: Sequence[str],
    outcomes: Iterable[Outcome],
    prior: float = PRIOR_GAMES,
    tolerance: float = 1e-12,
    max_iterations: int = 100_000,
) -> dict[str, float]:
    """Bradley–Terry strengths (summing to 1) by Hunter's MM iterations; P(i beats j) = p_i / (p_i + p_j)."""
    if len(models) < 2:
        return {model: 1.0 for model in models}
    wins = win_matrix(models, outcomes, prior)
    return dict(zip(models, mm_strengths(wins, tolerance, max_iterations), strict=True))


def mm_strengths(
    wins: list[list[float]], tolerance: float = 1e-12, max_iterations: int = 100_000
) -> list[float]:
    """Maximise the Bradley–Terry likelihood of a win matrix: p_i <- W_i / sum_j n_ij / (p_i + p_j)."""
    size = len(wins)
    totals = [sum(row) for row in wins]
    games = [[wins[i][j] + wins[j][i] for j in range(size)] for i in range(size)]
    if any(total <= 0 for total in totals):
        raise ValueError("every model needs a (virtual) win: give a prior > 0")
    strengths = [1.0 / size] * size
    for _ in range(max_iterations):
        updated = [
            totals[i]
            / sum(games[i][j] / (strengths[i] + strengths[j]) for j in range(size) if j != i and games[i][j])
            for i in range(size)
        ]
        scale = sum(updated)
        updated = [value / scale for value in updated]
        change = max(abs(a - b) for a, b in zip(updated, strengths, strict=True))
        strengths = updated
        if change < tolerance:
            break
    return strengths


@dataclass(frozen=True)
class Agreement:
    """Agreement between raters over the items two or more of them judged."""

    items: int  # items with 2+ ratings
    ratings: int  # ratings on those items
    percent: float | None  # mean share of agreeing rater pairs per item
    fleiss_kappa: float | None  # None when undefined (no items, or every rating in one category)


def agreement(ratings: Mapping[str, Sequence[str]]) -> Agreement:
    """Percent agreement and Fleiss' kappa (raters per item may vary) of `{item: [category, ...]}`."""
    shared = [list(values) for values in ratings.values() if len(values) >= 2]
    if not shared:
        return Agreement(items=0, ratings=0, percent=None, fleiss_kappa=None)
    per_item: list[float] = []
    pooled: dict[str, int] = {}
    for values in shared:
        counts: dict[str, int] = {}
        for value in values:
            counts[value] = counts.get(value, 0) + 1
            pooled[value] = pooled.get(value, 0) + 1
        n = len(values)
        per_item.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
    observed = sum(per_item) / len(per_item)
    total = sum(pooled.values())
    expected = sum((count / total) ** 2 for count in pooled.values())
    kappa = None if math.isclose(expected, 1.0) else (observed - expected) / (1 - expected)
    return Agreement(items=len(shared), ratings=total, percent=observed, fleiss_kappa=kappa)
