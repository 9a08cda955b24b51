"""`/api/reviews`: blind A/B reviews, what a reviewer is shown (no model anywhere), votes and results.

Every bound sits here, at the edge: a review of one model, a model listed twice, an empty prompt
set or a vote outside A / B / tie / both bad is a 400 naming its `param` before anything is stored.
Before a review is closed nothing here carries a model's name: `ReviewPublic.models` is None and a
reviewer's items hold the two answers as slots `a` and `b` only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_MODELS = 8
MAX_PROMPTS = 500
MAX_PROMPT_CHARS = 8000
MAX_NOTE_CHARS = 2000
Choice = Literal["a", "b", "tie", "both_bad"]


class DatasetPrompts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, le=2**31 - 1)


class ReviewCreate(BaseModel):
    """Two or more models answer the same prompts: pasted ones (each a user message) or a dataset
    version's (each row's conversation up to its last assistant turn)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("Blind review", min_length=1, max_length=200)
    models: list[str] = Field(
        max_length=MAX_MODELS, description="Model ids: base models and fine-tuned ones."
    )
    prompts: list[str] | None = Field(None, max_length=MAX_PROMPTS, description="Pasted prompts.")
    dataset: DatasetPrompts | None = Field(None, description="Or: a dataset version's prompts.")
    max_prompts: int = Field(50, ge=1, le=MAX_PROMPTS, description="At most this many of the dataset's rows.")
    max_tokens: int = Field(128, ge=1, le=4096, description="Longest answer, in tokens (greedy decoding).")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("models")
    @classmethod
    def _different_models(cls, models: list[str]) -> list[str]:
        names = [name.strip() for name in models]
        if len(names) < 2:
            raise ValueError("a review needs two or more models: add another (a base model counts)")
        if any(not name or len(name) > 1000 for name in names):
            raise ValueError("each model is a model id (1 to 1000 characters)")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"'{twice[0]}' is listed twice: a review compares two or more different models")
        return names

    @field_validator("prompts")
    @classmethod
    def _pasted_prompts(cls, prompts: list[str] | None) -> list[str] | None:
        if prompts is None:
            return None
        kept = [text.strip() for text in prompts if text.strip()]
        if not kept:
            raise ValueError("the prompt set is empty: paste one prompt per line")
        if too_long := next((i for i, text in enumerate(kept) if len(text) > MAX_PROMPT_CHARS), None):
            raise ValueError(f"prompt {too_long + 1} is over {MAX_PROMPT_CHARS} characters")
        return kept

    @model_validator(mode="after")
    def _one_prompt_source(self) -> ReviewCreate:
        if (self.prompts is None) == (self.dataset is None):
            raise ValueError(
                "give the prompts either as `prompts` (a list of texts) or as `dataset`, not both"
            )
        return self


class Progress(BaseModel):
    answers_done: int
    answers_total: int
    items: int
    votes: int
    reviewers: int
    your_votes: int


class JudgeStatus(BaseModel):
    """The automatic judge's run; its model is named only in the results, after close."""

    status: Literal["running", "succeeded", "failed"]
    done: int
    total: int
    error: str | None = None


class ReviewPublic(BaseModel):
    id: str
    object: Literal["review"] = "review"
    name: str
    status: Literal["generating", "open", "closed", "failed"]
    owner: bool = Field(description="Whether the calling key created the review (and may close it).")
    model_count: int
    prompt_count: int
    models: list[str] | None = Field(None, description="Named only once the review is closed.")
    max_tokens: int
    seed: int
    progress: Progress
    judge: JudgeStatus | None = None
    error: dict[str, str | None] | None = None
    created_at: int
    closed_at: int | None = None


class Turn(BaseModel):
    role: str
    content: str


class ShownAnswer(BaseModel):
    slot: Literal["a", "b"]
    text: str


class VotePublic(BaseModel):
    item_id: str
    choice: Choice
    note: str | None = None
    updated_at: int


class ReviewItemPublic(BaseModel):
    """One item as the calling reviewer sees it: the prompt and two answers in this reviewer's order."""

    id: str
    position: int
    prompt: list[Turn]
    answers: list[ShownAnswer]
    vote: VotePublic | None = None


class VoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=40)
    choice: Choice = Field(description="a or b (that answer is better), tie, or both_bad.")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


class JudgeCreate(BaseModel):
    """An OpenAI-compatible chat endpoint (tunery's own `/v1` included); the key is used for this run
    only and never stored."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(
        min_length=8,
        max_length=500,
        description="e.g. https://api.openai.com/v1; a non-public host only if the server allows it (TUNERY_URL_ALLOW_HOSTS)",
    )
    model: str = Field(min_length=1, max_length=400)
    api_key: str | None = Field(None, max_length=500)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise ValueError("base_url must be an http:// or https:// URL such as https://api.openai.com/v1")
        return url.rstrip("/")


class PairResult(BaseModel):
    """`model_a` against `model_b`: its win rate counts ties and "both bad" half, with a 95% Wilson interval."""

    model_a: str
    model_b: str
    a_wins: int
    b_wins: int
    ties: int
    both_bad: int
    n: int
    win_rate: float | None
    ci_low: float
    ci_high: float


class RankedModel(BaseModel):
    rank: int
    model: str
    strength: float = Field(description="Bradley–Terry strength; strengths sum to 1.")
    wins: int
    losses: int
    ties: int


class AgreementPublic(BaseModel):
    items: int = Field(description="Items with votes from two or more reviewers.")
    ratings: int
    percent: float | None
    fleiss_kappa: float | None


class Verdicts(BaseModel):
    votes: int
    voters: int
    pairs: list[PairResult]
    ranking: list[RankedModel]
    agreement: AgreementPublic | None = None


class JudgeVerdicts(Verdicts):
    judge: str
    consistent: float | None = Field(
        None,
        description="Share of items where both orders gave the same verdict (position bias shows as less).",
    )
    invalid: int = 0


class ReviewResults(BaseModel):
    review: ReviewPublic
    human: Verdicts
    judge: JudgeVerdicts | None = None
