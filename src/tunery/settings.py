"""Service settings from the environment (TUNERY_*) or a YAML file (TUNERY_SERVICE_CONFIG).

TUNERY_DATABASE_URL   sqlite:///<data_dir>/tunery.db (default) or postgresql+psycopg://user@host/db
TUNERY_BROKER_URL     unset: a local worker in the server; redis://host:6379/0: Celery workers
TUNERY_ARTIFACT_ROOT  uploaded files, job runs and models (default <data_dir>/artifacts)
TUNERY_URL_ALLOW_HOSTS  non-public hosts a request's URL may name (JSON list; default none)
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tunery.models import tunery_home
from tunery.urlpolicy import UrlPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNERY_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: tunery_home() / "service",
        description="Home of the embedded database and artifacts.",
    )
    database_url: str = Field("", description="SQLAlchemy URL; empty: SQLite in data_dir.")
    broker_url: str | None = Field(None, description="Celery broker (redis://…); none: the local worker.")
    artifact_root: Path | None = Field(None, description="Files, runs and models; empty: data_dir/artifacts.")
    queue: str = Field("tunery", description="Celery queue the server sends jobs to and workers read.")
    max_concurrent_jobs: int = Field(1, ge=1, description="Local worker: jobs trained at the same time.")
    lease_seconds: float = Field(30.0, gt=0, description="A running job's lease; renewed every third of it.")
    max_attempts: int = Field(3, ge=1, description="Training processes started for one job before it fails.")
    visibility_timeout: int = Field(
        7 * 24 * 3600, description="Redis redelivers an unacknowledged job after this; above the longest job."
    )
    poll_seconds: float = Field(
        1.0, gt=0, description="How often workers look for work and runners for news."
    )
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Largest upload; bigger ones get 413.")
    max_upload_rows: int = Field(1_000_000, ge=1, description="Most rows in an uploaded file; more get 413.")
    model_roots: list[Path] | None = Field(
        None,
        description="Local folders a request may name a model in (JSON list); unset: no local paths, only "
        "bundled aliases, hub ids and the project's fine-tuned models. The service's own storage is never "
        "one; URLs are always refused.",
    )
    allow_trust_remote_code: bool = Field(
        False, description="Let a job set model.trust_remote_code (runs the model repository's Python code)."
    )

    max_inference_rows_per_request: int = Field(
        64, ge=1, description="Inference: most answers one request asks for (n x prompts); more get 400."
    )
    max_inference_rows_per_key: int = Field(
        64, ge=1, description="Inference: answers one API key has in flight; beyond it, 429 with Retry-After."
    )
    max_inference_rows_per_project: int = Field(
        128, ge=1, description="Inference: answers one project's keys have in flight; beyond it, 429."
    )
    inference_base_models: list[str] = Field(
        default_factory=lambda: ["smollm2-135m-instruct"],
        description="Base models any project's key may chat with and `/v1/models` lists (JSON list of "
        "aliases or local folders).",
    )
    url_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts a request's URL (a tracker's server, a review's judge) may name beyond public "
        'ones (JSON list of names, addresses or CIDRs, e.g. ["mlflow.internal", "10.0.0.0/8"]): '
        "loopback, private, link-local and other non-public addresses are refused unless listed here.",
    )
    review_judge_hosts: list[str] = Field(
        default_factory=list, description="Old name of url_allow_hosts; its hosts are added to it."
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="The MLflow server (or any MLflow URI) a job tracks to when its request names none; "
        "default: MLFLOW_TRACKING_URI, else a store in the job's own run folder.",
    )

    max_job_steps: int = Field(100_000, ge=1, description="Jobs: the most optimiser steps one may ask for.")
    max_job_lora_rank: int = Field(1024, ge=1, description="Jobs: the largest lora.r (and adapter ranks).")
    max_job_length: int = Field(32_768, ge=8, description="Jobs: the largest data.max_length in tokens.")
    max_job_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Jobs: most train.threads (default: the cores).",
    )

    # What one request may hold: its body, and a prompt before it is tokenised (uploads: max_upload_bytes).
    max_request_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body but an upload's; bigger ones get 413."
    )
    max_prompt_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="Inference: largest prompt in UTF-8 bytes (a chat's message texts together, or one "
        "completion prompt), refused with 400 before it is tokenised; the default is ~8 bytes a token of a "
        "128k-token context.",
    )

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        self.data_dir = Path(self.data_dir).expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'tunery.db'}"
        if self.artifact_root is None:
            self.artifact_root = self.data_dir / "artifacts"
        self.broker_url = self.broker_url or None
        self.url_allow_hosts = [*self.url_allow_hosts, *self.review_judge_hosts]
        self.mlflow_tracking_uri = self.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        return self

    @property
    def url_policy(self) -> UrlPolicy:
        """The one rule for the URLs requests name (tunery/urlpolicy.py)."""
        return UrlPolicy.of(self.url_allow_hosts)

    @property
    def artifacts(self) -> Path:
        assert self.artifact_root is not None
        return Path(self.artifact_root)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if file := os.environ.get("TUNERY_SERVICE_CONFIG"):
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=file))
        return tuple(sources)
