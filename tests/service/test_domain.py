"""The service's domain layer on its own (a session, no HTTP), one dataset-version model for both
registries, and error codes read from the errors themselves."""

from __future__ import annotations

import io
import json

import pytest

from tests.conftest import chat_rows
from tests.security.conftest import NoteJobs, in_process_service, upload


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture
def service(tmp_path):
    with in_process_service(tmp_path / "service") as running:
        yield running


def test_the_domain_creates_a_job_from_a_plain_session_without_any_request(tmp_path):
    from tunery.service.domain import datasets, files, jobs
    from tunery.service.schemas.jobs import JobCreate
    from tunery.settings import Settings
    from tunery.store import connect, session_factory

    settings = Settings(data_dir=tmp_path / "service")
    sessions = session_factory(connect(settings.database_url))
    dispatcher = NoteJobs()
    with sessions() as session:
        stored = files.store_upload(
            session, "team-a", settings, io.BytesIO(jsonl(chat_rows(6))), "orders.jsonl", "fine-tune"
        )
        request = JobCreate(model="smollm2-135m-instruct", training_file=stored.id, seed=7)
        job = jobs.create_job(session, "team-a", request, settings, dispatcher)
        assert datasets.version_of_upload(session, "team-a", stored).version == 1
    assert (job.status, job.seed, dispatcher.submitted) == ("queued", 7, [job.id])
    assert (settings.artifacts / stored.path).is_file()


def test_both_registries_make_the_same_versions_of_the_same_files(service, tmp_path):
    """`tunery data add` (JSON index) and an upload (SQL table): same hash, rows, format, stats, parent."""
    from tunery.data.registry import DatasetStore
    from tunery.data.versions import version_stats

    client, key_of = service
    headers = key_of("team-a")
    store = DatasetStore(root=tmp_path / "datasets")
    rows = chat_rows(8)
    for content in (jsonl(rows + rows[:2]), jsonl(rows[:5])):  # duplicates in the first: non-zero stats
        path = tmp_path / "orders.jsonl"
        path.write_bytes(content)
        kept = store.add("orders", path).version
        assert upload(client, headers, "orders.jsonl", content).status_code == 200
        served = client.get(f"/api/datasets/orders/versions/{kept.version}", headers=headers).json()
        assert (served["version"], served["parent"]) == (kept.version, kept.parent)
        assert (served["content_hash"], served["rows"], served["format"]) == (
            kept.content_hash, kept.rows, kept.format,
        )  # fmt: skip
        assert version_stats(served["report"]) == kept.stats
    assert kept.parent == 1 and store.versions("orders")[0].stats["exact_duplicates"] == 2


def test_no_two_classes_are_called_dataset_version():
    import tunery.data.registry as registry
    import tunery.store.tables as tables

    assert hasattr(registry, "DatasetVersion") and not hasattr(tables, "DatasetVersion")
    assert tables.DatasetVersionRow.__tablename__ == "dataset_versions"  # no migration: the table is the same


def test_a_user_error_is_answered_with_its_own_code(service, monkeypatch):
    """A TuneryError reaching the API leaves as a 400 in OpenAI's shape carrying its `code`, never a 500."""
    from tunery.errors import TuneryError
    from tunery.service.domain import files

    class RowsOnFire(TuneryError):
        code = "rows_on_fire"

    def burn(path, filename):
        raise RowsOnFire(f"{filename} is on fire")

    monkeypatch.setattr(files, "check_upload", burn)
    client, key_of = service
    answer = upload(client, key_of("team-a"), "orders.jsonl", jsonl(chat_rows(2)))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["type"], error["message"]) == (
        "rows_on_fire", "invalid_request_error", "orders.jsonl is on fire",
    )  # fmt: skip


def test_a_bad_training_config_answers_the_config_errors_code(service, monkeypatch):
    from tunery.config import ConfigError

    client, key_of = service
    headers = key_of("team-a")
    file_id = upload(client, headers, "orders.jsonl", jsonl(chat_rows(4))).json()["id"]
    monkeypatch.setattr(ConfigError, "code", "config_code_read_from_the_error")
    body = {"model": "smollm2-135m-instruct", "training_file": file_id, "tunery": {"train": {"lr": "fast"}}}
    answer = client.post("/v1/fine_tuning/jobs", headers=headers, json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "config_code_read_from_the_error"
    assert answer.json()["error"]["param"] == "tunery"


def test_refusal_reads_the_code_of_the_error_it_is_given():
    from tunery.errors import TuneryError
    from tunery.service.errors import refusal

    class Odd(TuneryError):
        code = "odd_code"

    made = refusal(Odd("odd"), status=409, param="x", report={"rows": 1})
    assert (made.status, made.code, made.param, made.message, made.extra) == (
        409, "odd_code", "x", "odd", {"report": {"rows": 1}},
    )  # fmt: skip
