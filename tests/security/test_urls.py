"""A key cannot aim the server at its own network or its file system through a URL in a request: a
job's MLflow URI (the `tunery` extension or OpenAI's `integrations`) and a review judge's base URL go
through one policy (tunery/urlpolicy.py), refused as a 400 naming the field, unless the operator
allows the host (TUNERY_URL_ALLOW_HOSTS)."""

from __future__ import annotations

import json

from tests.security.conftest import chat_lines, in_process_service, upload

JOB = "/v1/fine_tuning/jobs"
REFUSED_URIS = [
    "sqlite:////tmp/tunery-hostile.db",
    "sqlite:///hostile.db",
    "file:///etc",
    "mlruns",
    "./mlflow.db",
    "http://127.0.0.1:6379",
    "http://localhost:5000",
    "http://169.254.169.254/latest",
    "http://10.0.0.1:5000",
    "http://2130706433:5000",
    "http://0x7f.1:5000",
    "http://[::ffff:127.0.0.1]:5000",
    "http://[::1]:5000",
    "http://evil@127.0.0.1:5000",
]


def tracking_requests(uri: str) -> list[tuple[dict, str]]:
    """The two ways a job request names an MLflow URI, with the param each refusal names."""
    return [
        ({"tunery": {"train": {"report_to": ["mlflow"]}, "mlflow": {"tracking_uri": uri}}},
         "tunery.mlflow.tracking_uri"),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}},
                           {"type": "mlflow", "mlflow": {"tracking_uri": uri}}]},
         "integrations[1].mlflow.tracking_uri"),
    ]  # fmt: skip


def test_a_job_cannot_name_a_tracking_uri_on_the_servers_disk_or_network(tmp_path):
    with in_process_service(tmp_path / "service") as (client, key_of):
        file_id = upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]
        for extra, param in (request for uri in REFUSED_URIS for request in tracking_requests(uri)):
            answer = client.post(
                JOB, headers=key_of("a"), json={"model": "org/m", "training_file": file_id, **extra}
            )
            assert answer.status_code == 400, (extra, answer.text)
            error = answer.json()["error"]
            assert (error["code"], error["param"], error["type"]) == (
                "url_not_allowed",
                param,
                "invalid_request_error",
            )
            assert str(tmp_path) not in answer.text
        assert client.get(JOB, headers=key_of("a")).json()["data"] == []
    assert not (tmp_path / "tunery-hostile.db").exists() and not list(tmp_path.rglob("hostile.db"))


def test_the_operator_may_allow_a_tracking_server_on_its_own_network(tmp_path):
    with in_process_service(tmp_path / "service", url_allow_hosts=["127.0.0.1"]) as (client, key_of):
        file_id = upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]
        for extra, _ in tracking_requests("http://127.0.0.1:5000"):
            answer = client.post(
                JOB, headers=key_of("a"), json={"model": "org/m", "training_file": file_id, **extra}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["tunery"]["mlflow"]["tracking_uri"] == "http://127.0.0.1:5000"
        for extra, param in tracking_requests("http://10.0.0.1:5000"):  # another address stays refused
            answer = client.post(
                JOB, headers=key_of("a"), json={"model": "org/m", "training_file": file_id, **extra}
            )
            assert answer.status_code == 400 and answer.json()["error"]["param"] == param
            assert "TUNERY_URL_ALLOW_HOSTS" in answer.json()["error"]["message"]


def test_a_tracker_cannot_take_a_host_setting_from_a_request(service):
    client, key_of = service
    file_id = upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]
    for extra in (
        {"integrations": [{"type": "wandb", "wandb": {"base_url": "http://127.0.0.1:8080"}}]},
        {"tunery": {"wandb": {"host": "http://127.0.0.1:8080"}}},
        {"tunery": {"train": {"report_to": ["tensorboard"]}, "tensorboard": {"logdir": "/tmp"}}},
    ):
        answer = client.post(
            JOB, headers=key_of("a"), json={"model": "org/m", "training_file": file_id, **extra}
        )
        assert answer.status_code == 400, (extra, answer.text)


def test_the_training_process_gets_the_servers_policy_and_mlflow_uri_only(tmp_path, monkeypatch):
    from tunery.jobs.runner import _child_env
    from tunery.settings import Settings
    from tunery.urlpolicy import JOB_ENV, UrlPolicy

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plain = _child_env(Settings(data_dir=tmp_path), None)
    assert json.loads(plain[JOB_ENV]) == [] and "MLFLOW_TRACKING_URI" not in plain
    settings = Settings(
        data_dir=tmp_path, url_allow_hosts=["mlflow.internal"], mlflow_tracking_uri="sqlite:///op.db"
    )
    env = _child_env(settings, None)
    assert UrlPolicy.of(json.loads(env[JOB_ENV])) == UrlPolicy.of(["mlflow.internal"])
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///op.db"  # the operator's own URI, of any kind
