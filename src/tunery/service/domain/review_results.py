"""A closed review's results and exports: win rates, a Bradley–Terry ranking, agreement; human votes
and the automatic judge's verdicts apart. The statistics are `tunery.evaluate.pairwise`.

    review_results(session, project, review_id)     # ReviewResults; 409 until the owner closes the review
    export_rows(session, project, review_id)        # one row per human vote and per judge verdict
    as_csv(rows)                                     # the same as CSV text
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunery.evaluate.pairwise import Outcome, agreement, bradley_terry, pair_tallies
from tunery.service.domain.reviews import CLOSED, choice_of, get_review, public
from tunery.service.errors import ApiError
from tunery.service.schemas.reviews import (
    AgreementPublic,
    JudgeVerdicts,
    PairResult,
    RankedModel,
    ReviewResults,
    Verdicts,
)
from tunery.store.tables import Review, ReviewItem, ReviewJudgement, ReviewVote

PAIRWISE = {"first": "x", "second": "y", "tie": "tie", "both_bad": "both_bad"}
EXPORT_FIELDS = [
    "source", "rater", "item_id", "prompt_index", "prompt", "model_a", "model_b", "choice", "winner",
    "note", "time",
]  # fmt: skip


def closed_review(session: Session, project: str, review_id: str) -> Review:
    review = get_review(session, project, review_id)
    if review.status != CLOSED:
        raise ApiError(
            409, "the results open when the review's owner closes it: until then no one sees which model "
            "wrote which answer", code="review_not_closed",
        )  # fmt: skip
    return review


def review_results(session: Session, project: str, review_id: str, key_id: str) -> ReviewResults:
    review = closed_review(session, project, review_id)
    items = {
        item.id: item for item in session.scalars(select(ReviewItem).where(ReviewItem.review_id == review.id))
    }
    votes = list(session.scalars(select(ReviewVote).where(ReviewVote.review_id == review.id)))
    human = verdicts(review.models, [outcome(review, items[v.item_id], v.verdict) for v in votes])
    human.voters = len({vote.reviewer_key_id for vote in votes})
    by_item: dict[str, list[str]] = defaultdict(list)
    for vote in votes:
        by_item[vote.item_id].append(vote.verdict)
    found = agreement(by_item)
    human.agreement = AgreementPublic(
        items=found.items, ratings=found.ratings, percent=found.percent, fleiss_kappa=found.fleiss_kappa
    )
    return ReviewResults(
        review=public(session, review, key_id), human=human, judge=judge_verdicts(session, review, items)
    )


def outcome(review: Review, item: ReviewItem, verdict: str) -> Outcome:
    return review.models[item.first_model], review.models[item.second_model], PAIRWISE[verdict]


def verdicts(models: list[str], outcomes: list[Outcome]) -> Verdicts:
    """Pairs (each with its win rate and Wilson interval) and the Bradley–Terry ranking of `outcomes`."""
    pairs = []
    record = {model: [0, 0, 0] for model in models}  # wins, losses, ties (both bad counts as a tie)
    for tally in pair_tallies(models, outcomes):
        low, high = tally.interval()
        pairs.append(
            PairResult(
                model_a=tally.first, model_b=tally.second, a_wins=tally.first_wins, b_wins=tally.second_wins,
                ties=tally.ties, both_bad=tally.both_bad, n=tally.n, win_rate=tally.win_rate, ci_low=low, ci_high=high,
            )
        )  # fmt: skip
        record[tally.first][0] += tally.first_wins
        record[tally.first][1] += tally.second_wins
        record[tally.second][0] += tally.second_wins
        record[tally.second][1] += tally.first_wins
        for model in (tally.first, tally.second):
            record[model][2] += tally.ties + tally.both_bad
    strengths = bradley_terry(models, outcomes)
    ordered = sorted(models, key=lambda model: -strengths[model])
    ranking = [
        RankedModel(rank=rank, model=model, strength=strengths[model], wins=record[model][0],
                    losses=record[model][1], ties=record[model][2])
        for rank, model in enumerate(ordered, start=1)
    ]  # fmt: skip
    return Verdicts(votes=len(outcomes), voters=0, pairs=pairs, ranking=ranking)


def combined(first_as_a: str | None, second_as_a: str | None) -> str:
    """One verdict from the judge's two orders: the same winner both ways, else a tie (a judge that
    always picks the answer shown first ties everything); unreadable in either order: invalid."""
    if first_as_a in (None, "invalid") or second_as_a in (None, "invalid"):
        return "invalid"
    return first_as_a if first_as_a == second_as_a else "tie"


def judge_verdicts(session: Session, review: Review, items: dict[str, ReviewItem]) -> JudgeVerdicts | None:
    if not review.judge:
        return None
    name = review.judge["model"]
    orders: dict[str, dict[bool, str]] = defaultdict(dict)
    query = select(ReviewJudgement).where(
        ReviewJudgement.review_id == review.id, ReviewJudgement.judge == name
    )
    for row in session.scalars(query):
        orders[row.item_id][row.first_as_a] = row.verdict
    outcomes, agreeing, invalid = [], 0, 0
    for item_id, both in orders.items():
        verdict = combined(both.get(True), both.get(False))
        if verdict == "invalid":
            invalid += 1
            continue
        agreeing += both[True] == both[False]
        outcomes.append(outcome(review, items[item_id], verdict))
    counted = verdicts(review.models, outcomes)
    return JudgeVerdicts(
        **counted.model_dump(exclude={"voters"}), voters=1, judge=name, invalid=invalid,
        consistent=agreeing / len(outcomes) if outcomes else None,
    )  # fmt: skip


def export_rows(session: Session, project: str, review_id: str) -> list[dict]:
    """One row per human vote (model_a is the model that reviewer saw as A) and per judge verdict."""
    review = closed_review(session, project, review_id)
    items = {
        item.id: item for item in session.scalars(select(ReviewItem).where(ReviewItem.review_id == review.id))
    }
    rows = []
    for vote in session.scalars(
        select(ReviewVote).where(ReviewVote.review_id == review.id).order_by(ReviewVote.seq)
    ):
        item = items[vote.item_id]
        a, b = shown_pair(review, item, vote.first_shown_as == "a")
        rows.append(row(review, item, "human", vote.reviewer_key_id, a, b, choice_of(vote), vote.verdict,
                        vote.note, vote.updated_at))  # fmt: skip
    query = (
        select(ReviewJudgement).where(ReviewJudgement.review_id == review.id).order_by(ReviewJudgement.seq)
    )
    for judged in session.scalars(query):
        item = items[judged.item_id]
        a, b = shown_pair(review, item, judged.first_as_a)
        choice = judged.verdict if judged.verdict in ("tie", "invalid") else (
            "a" if (judged.verdict == "first") == judged.first_as_a else "b")  # fmt: skip
        rows.append(row(review, item, "judge", judged.judge, a, b, choice, judged.verdict, judged.reply,
                        judged.created_at))  # fmt: skip
    return rows


def shown_pair(review: Review, item: ReviewItem, first_as_a: bool) -> tuple[str, str]:
    first, second = review.models[item.first_model], review.models[item.second_model]
    return (first, second) if first_as_a else (second, first)


def row(review, item, source, rater, a, b, choice, verdict, note, time) -> dict:
    winner = {"first": review.models[item.first_model], "second": review.models[item.second_model]}.get(
        verdict, verdict
    )
    prompt = review.prompts[item.prompt_index]
    asked = next((turn["content"] for turn in reversed(prompt) if turn["role"] == "user"), "")
    return {
        "source": source, "rater": rater, "item_id": item.id, "prompt_index": item.prompt_index, "prompt": asked,
        "model_a": a, "model_b": b, "choice": choice, "winner": winner, "note": note or "", "time": time,
    }  # fmt: skip


def export_document(
    session: Session, project: str, review_id: str, key_id: str, format: str
) -> tuple[str, str]:
    """(text, media type) of the export: the results and every row as JSON, or the rows as CSV."""
    rows = export_rows(session, project, review_id)
    if format == "csv":
        return as_csv(rows), "text/csv; charset=utf-8"
    results = review_results(session, project, review_id, key_id)
    document = {"object": "review.export", "results": results.model_dump(mode="json"), "rows": rows}
    return json.dumps(document, ensure_ascii=False, indent=1), "application/json"


def as_csv(rows: list[dict]) -> str:
    """CSV text; a cell that a spreadsheet would run as a formula (=, +, -, @ first) gets a leading '."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: inert(value) for key, value in r.items()} for r in rows)
    return buffer.getvalue()


def inert(value):
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
