"""OpenAI's `dpo` method through the official client against the real service (local worker, tiny model):
an OpenAI-format preference file trains, a malformed one is refused naming its line and field and
nothing is stored, and files meant for the other task are refused when the job is created."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import write_jsonl
from tests.service.conftest import Service, events_of, tiny_job_options, wait_for
from tests.tasks.preference_rows import pair_rows


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("service-pref"), {}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key("team-a"), base_url=f"{service.url}/v1", max_retries=0)


@pytest.fixture(scope="module")
def pairs_file(client, tmp_path_factory):
    path = write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", pair_rows(12, "openai"))
    return client.files.create(file=path.open("rb"), purpose="fine-tune")


def finished(client, job_id: str):
    def done():
        statuses = [e.data.get("status") for e in events_of(client, job_id) if e.data]
        return {"succeeded", "failed", "cancelled"} & set(statuses)

    wait_for(done, timeout=180, what=f"job {job_id} to finish")
    return client.fine_tuning.jobs.retrieve(job_id)


def test_a_dpo_job_on_an_openai_preference_file_succeeds(client, pairs_file, tiny_model_dir):
    assert pairs_file.status == "processed"
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir),
        training_file=pairs_file.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25, "batch_size": 4, "n_epochs": 1}}},
        extra_body={"tunery": tiny_job_options()},
    )
    job = finished(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.25  # type: ignore[union-attr]
    resolved = job.model_extra["tunery"]  # type: ignore[index]
    assert resolved["task"] == "preference" and resolved["preference"] == resolved["preference"] | {
        "loss": "dpo",
        "beta": 0.25,
    }
    metrics = [e.data for e in events_of(client, job.id) if e.type == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3]  # 12 pairs / batch 4


def test_the_native_keys_pick_another_loss(client, pairs_file, tiny_model_dir):
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir),
        training_file=pairs_file.id,
        extra_body={"tunery": tiny_job_options(max_steps=2)
                    | {"task": "preference", "preference": {"loss": "simpo", "beta": 2.0}}},
    )  # fmt: skip
    job = finished(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.model_extra["tunery"]["preference"]["loss"] == "simpo"  # type: ignore[index]


def test_a_malformed_preference_file_gets_a_400_naming_line_and_field_and_nothing_is_stored(
    client, service, tmp_path
):
    rows = pair_rows(3, "openai")
    del rows[1]["non_preferred_output"]
    rows[2]["preferred_output"] = [{"role": "user", "content": "x"}]
    bad = write_jsonl(tmp_path / "bad-pairs.jsonl", rows)
    before = [f.id for f in client.files.list()]
    stored = sorted((service.home / "service" / "artifacts" / "files").glob("*"))
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=bad.open("rb"), purpose="fine-tune")
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "invalid_file" and error["param"] == "file"
    assert "line 2, field 'non_preferred_output': required field is missing" in error["message"]
    assert "line 3, field 'preferred_output[0].role': must be 'assistant'" in error["message"]
    assert [(e["line"], e["field"]) for e in error["report"]["errors"]] == [
        (2, "non_preferred_output"), (3, "preferred_output[0].role")
    ]  # fmt: skip
    assert [f.id for f in client.files.list()] == before
    assert sorted((service.home / "service" / "artifacts" / "files").glob("*")) == stored


def test_the_wrong_file_for_the_method_is_refused_when_the_job_is_created(
    client, pairs_file, tiny_model_dir, tmp_path
):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")  # fmt: skip
    sft_file = client.files.create(file=chat.open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=sft_file.id, method={"type": "dpo"}
        )
    assert refused.value.body["param"] == "training_file"  # type: ignore[index]
    assert "preferred_output" in refused.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="holds preference rows") as refused:
        client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=pairs_file.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=pairs_file.id,
            method={"type": "dpo", "dpo": {"hyperparameters": {"beta": -1}}},
        )  # fmt: skip
    assert "beta" in str(refused.value.body)
    with pytest.raises(openai.BadRequestError, match="leave tunery.task out"):
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=pairs_file.id, method={"type": "dpo"},
            extra_body={"tunery": {"task": "sft"}},
        )  # fmt: skip
