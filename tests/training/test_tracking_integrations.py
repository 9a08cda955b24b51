"""The API's `integrations` (OpenAI's shape) become train.report_to, tracker sections and job tags."""

from __future__ import annotations

import pytest

from tunery.service.domain.jobs import job_config
from tunery.service.errors import ApiError
from tunery.service.schemas.jobs import Hyperparameters, JobCreate
from tunery.urlpolicy import UrlPolicy


def config_of(integrations, tmp_path, tunery=None, allow_hosts=("mlflow",)):
    request = JobCreate(model="m", training_file="file-x", integrations=integrations, tunery=tunery)
    return job_config(
        request, Hyperparameters(), "ftjob-1", tmp_path, "t.jsonl", None, project="proj",
        url_policy=UrlPolicy.of(allow_hosts),
    )  # fmt: skip


def test_wandb_and_mlflow_integrations_map_to_the_config_with_job_tags(tmp_path):
    config = config_of(
        [{"type": "wandb", "wandb": {"project": "orders", "tags": ["v2"]}},
         {"type": "mlflow", "mlflow": {"tracking_uri": "http://mlflow:5000", "register": True}}],
        tmp_path,
    )  # fmt: skip
    assert config["train"]["report_to"] == ["wandb", "mlflow"]
    assert config["train"]["tracking_tags"] == {"job": "ftjob-1", "project": "proj", "v2": "true"}
    assert config["wandb"]["project"] == "orders"
    assert config["mlflow"]["register"] is True and config["mlflow"]["tracking_uri"] == "http://mlflow:5000"


def test_no_integrations_leave_tracking_off(tmp_path):
    assert config_of(None, tmp_path)["train"]["report_to"] == []


@pytest.mark.parametrize(
    ("integrations", "param"),
    [
        (
            [{"type": "mlflow", "mlflow": {"tracking_uri": "file:///etc"}}],
            "integrations[0].mlflow.tracking_uri",
        ),
        (
            [{"type": "mlflow", "mlflow": {"tracking_uri": "sqlite:///x.db"}}],
            "integrations[0].mlflow.tracking_uri",
        ),
        (
            [{"type": "mlflow", "mlflow": {"tracking_uri": "mlruns"}}],
            "integrations[0].mlflow.tracking_uri",
        ),
        (
            [
                {"type": "tensorboard"},
                {"type": "mlflow", "mlflow": {"tracking_uri": "http://127.0.0.1:5000"}},
            ],
            "integrations[1].mlflow.tracking_uri",
        ),
        ([{"type": "wandb", "wandb": {"projekt": "x"}}], "tunery"),
        ([{"type": "wandb", "wandb": {"base_url": "http://127.0.0.1"}}], "tunery"),
    ],
)
def test_hostile_integrations_are_refused_with_the_param(integrations, param, tmp_path):
    with pytest.raises(ApiError) as caught:
        config_of(integrations, tmp_path)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "uri", ["sqlite:////some/path.db", "file:///etc", "mlruns", "http://169.254.169.254", "http://2130706433"]
)
def test_the_tunery_extension_names_no_tracking_uri_the_integrations_could_not(uri, tmp_path):
    tunery = {"train": {"report_to": ["mlflow"]}, "mlflow": {"tracking_uri": uri}}
    with pytest.raises(ApiError) as caught:
        config_of(None, tmp_path, tunery=tunery)
    assert (caught.value.param, caught.value.code) == ("tunery.mlflow.tracking_uri", "url_not_allowed")


def test_without_the_operators_leave_only_public_tracking_servers_pass(tmp_path):
    integrations = [{"type": "mlflow", "mlflow": {"tracking_uri": "http://mlflow:5000"}}]
    with pytest.raises(ApiError, match="cannot be resolved"):
        config_of(integrations, tmp_path, allow_hosts=())
    public = [{"type": "mlflow", "mlflow": {"tracking_uri": "https://93.184.216.34"}}]
    assert config_of(public, tmp_path, allow_hosts=())["mlflow"]["tracking_uri"] == "https://93.184.216.34"


def test_an_unknown_integration_type_is_a_validation_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        JobCreate(model="m", training_file="f", integrations=[{"type": "neptune"}])
