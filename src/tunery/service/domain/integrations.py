"""OpenAI's `integrations` of a job request, as the training config's tracker settings.

    {"integrations": [{"type": "wandb", "wandb": {"project": "orders", "tags": ["v2"]}}]}
    -> train.report_to: [wandb], wandb.project: orders, train.tracking_tags: {v2: "true", job: …, project: …}

Every tracked job carries its job id and project as tags. An MLflow URI from a request, here or in
the `tunery` extension, goes through the server's URL policy (tunery/urlpolicy.py): a file or
database URI would let a request write wherever the server may, a loopback one probe its ports.
"""

from __future__ import annotations

from typing import Any

from tunery.service.errors import check_url
from tunery.service.schemas.jobs import Integration, JobCreate
from tunery.urlpolicy import UrlPolicy


def check_tracking_uris(request: JobCreate, policy: UrlPolicy) -> None:
    """Every tracking URI the request names (the `tunery` extension's and each integration's)."""
    mlflow = (request.tunery or {}).get("mlflow")
    named = [("tunery.mlflow.tracking_uri", mlflow.get("tracking_uri") if isinstance(mlflow, dict) else None)]
    for index, integration in enumerate(request.integrations or []):
        uri = (integration.mlflow or {}).get("tracking_uri") if integration.type == "mlflow" else None
        named.append((f"integrations[{index}].mlflow.tracking_uri", uri))
    for param, uri in named:
        if uri is not None:
            check_url(uri, policy, param)


def tracking_settings(integrations: list[Integration] | None, job_id: str, project: str | None) -> dict:
    """Config sections (train.report_to, wandb, mlflow, train.tracking_tags) for the requested trackers;
    their URIs are checked by `check_tracking_uris`."""
    if not integrations:
        return {}
    sections: dict[str, Any] = {"report_to": [], "tracking_tags": {"job": job_id, "project": project or ""}}
    for integration in integrations:
        sections["report_to"].append(integration.type)
        options = (
            dict(getattr(integration, integration.type, None) or {})
            if integration.type != "tensorboard"
            else {}
        )
        for tag in options.pop("tags", None) or []:
            sections["tracking_tags"][str(tag)] = "true"
        if options:
            sections[integration.type] = options
    return sections
