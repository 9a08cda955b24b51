"""The service's tables. Ids are OpenAI-style strings; `seq` orders lists and pages them.

JSON columns hold what is read whole (a data report, a config, lineage); everything a
query filters on is a column of its own.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    project: Mapped[str] = mapped_column(String(200), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to tell keys apart
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class File(Base):
    __tablename__ = "files"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("file"))
    project: Mapped[str] = mapped_column(String(200), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    purpose: Mapped[str] = mapped_column(String(40))
    bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)  # the stored copy, relative to the artifact root
    content_hash: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(40))
    rows: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class DatasetVersionRow(Base):
    """A dataset version in the service, filled from `tunery.data.versions.VersionRecord`."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("project", "name", "version"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(40))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class Job(Base):
    __tablename__ = "jobs"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("ftjob"))
    project: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(Text)
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved TuneryConfig, as a dict
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # {code, message, param}
    fine_tuned_model: Mapped[str | None] = mapped_column(Text, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    run_dir: Mapped[str] = mapped_column(Text)  # relative to the artifact root
    # Running it: who holds it, until when, which process; what of metrics.jsonl became events.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    dispatched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # What it needs ({gpus, nodes, queue}: tunery.jobs.resources) and the Celery worker that runs it.
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Event(Base):
    __tablename__ = "job_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("ftevent"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), default="message")  # message | metrics
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Checkpoint(Base):
    __tablename__ = "job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("ftckpt"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)  # relative to the artifact root
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class Model(Base):
    __tablename__ = "models"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(400), unique=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    base_model: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)  # the adapter folder, relative to the artifact root
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class WebSession(Base):
    """A dashboard sign-in: the cookie holds a random token, this row its sha256, so a session ends
    (sign-out, key revoked, expiry) the moment its row says so."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))  # sent back by every form and fetch
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Review(Base):
    """A blind A/B review: models answer the same prompts; reviewers pick the better of two answers.

    `models` (in the order given) and `salt` (which side each reviewer sees each model on) never
    leave the server before the review is closed (`tunery.service.domain.reviews`)."""

    __tablename__ = "reviews"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("review"))
    project: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_key_id: Mapped[str] = mapped_column(String(40))  # the key that created it; only it closes it
    status: Mapped[str] = mapped_column(String(16), index=True)  # generating | open | closed | failed
    models: Mapped[list[Any]] = mapped_column(JSON)
    prompts: Mapped[list[Any]] = mapped_column(JSON)  # [[{role, content}, ...], ...]
    source: Mapped[dict[str, Any]] = mapped_column(JSON)  # {kind: pasted|dataset, name, version}
    max_tokens: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    salt: Mapped[str] = mapped_column(String(64))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # {code, message}
    judge: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the automatic judge's run
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    closed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ReviewAnswer(Base):
    """One model's answer to one prompt of a review."""

    __tablename__ = "review_answers"
    __table_args__ = (UniqueConstraint("review_id", "prompt_index", "model_index"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    prompt_index: Mapped[int] = mapped_column(Integer)
    model_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class ReviewItem(Base):
    """A prompt and a pair of the review's models (`first_model` < `second_model`, indexes into
    `Review.models`); its id is random, so it tells nothing of the pair."""

    __tablename__ = "review_items"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id("revitem"))
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    prompt_index: Mapped[int] = mapped_column(Integer)
    first_model: Mapped[int] = mapped_column(Integer)
    second_model: Mapped[int] = mapped_column(Integer)


class ReviewVote(Base):
    """A reviewer's verdict on an item, in the item's own terms (`first` / `second` model better, `tie`,
    `both_bad`); `first_shown_as` keeps the side the reviewer saw the first model on ("a" or "b")."""

    __tablename__ = "review_votes"
    __table_args__ = (UniqueConstraint("item_id", "reviewer_key_id"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    reviewer_key_id: Mapped[str] = mapped_column(String(40))
    verdict: Mapped[str] = mapped_column(String(16))
    first_shown_as: Mapped[str] = mapped_column(String(1))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now)


class ReviewJudgement(Base):
    """An automatic judge's verdict on an item in one order (`first_as_a`: the first model shown as A),
    kept apart from the human votes; `verdict` is in the item's terms, or `invalid` (unreadable reply)."""

    __tablename__ = "review_judgements"
    __table_args__ = (UniqueConstraint("item_id", "judge", "first_as_a"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    judge: Mapped[str] = mapped_column(String(400))  # the judge's model name
    first_as_a: Mapped[bool] = mapped_column(Boolean)
    verdict: Mapped[str] = mapped_column(String(16))
    reply: Mapped[str] = mapped_column(Text)  # the judge's reply, cut to 200 characters
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
