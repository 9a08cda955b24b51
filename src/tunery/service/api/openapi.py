"""The published OpenAPI schema says what the API answers, so clients (and schemathesis, which
holds the app to it in tests/security/test_openapi_fuzz.py) can rely on it:

- every refusal in OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`): a 400
  where FastAPI would document its 422 (the handlers in `errors` answer validation errors with a
  400), and that shape for every other status an operation may refuse with (401, 404, 409, 413, 429);
- answers that stream say so (`text/event-stream` beside the JSON of the inference operations);
- links from the operations that create or list things to those that read, cancel, delete or use
  them (a file -> its content, report, a job on it; a job -> its events, checkpoints, run, a
  second cancel; a listed model -> its page and a chat with it).

    app.include_router(...)          # every route first
    openapi.document(app)            # then the schema generator is wrapped
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # some refusals add fields (a file's row errors)

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """A refusal, in OpenAI's error shape."""

    error: ErrorDetail


STREAMED = ("/v1/chat/completions", "/v1/completions")
EVENT = {  # one server-sent event (before Open API 3.2, a stream's `schema` describes each event)
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": 'a chunk (`{...}`, or `{"error": {...}}`), then `[DONE]`'},
        "event": {"type": "string"},
    },
}
# (method, path) of a producer -> link name -> (method, path of the target, parameters, request body)
LINKS: dict[tuple[str, str], dict[str, tuple[str, str, dict[str, str], dict[str, str] | None]]] = {
    ("post", "/v1/files"): {
        "GetFile": ("get", "/v1/files/{file_id}", {"file_id": "$response.body#/id"}, None),
        "GetFileContent": ("get", "/v1/files/{file_id}/content", {"file_id": "$response.body#/id"}, None),
        "GetFileReport": ("get", "/api/files/{file_id}/report", {"file_id": "$response.body#/id"}, None),
        "DeleteFile": ("delete", "/v1/files/{file_id}", {"file_id": "$response.body#/id"}, None),
        "TrainOnFile": ("post", "/v1/fine_tuning/jobs", {}, {"training_file": "$response.body#/id"}),
    },
    ("post", "/v1/fine_tuning/jobs"): {
        "GetJob": ("get", "/v1/fine_tuning/jobs/{job_id}", {"job_id": "$response.body#/id"}, None),
        "CancelJob": ("post", "/v1/fine_tuning/jobs/{job_id}/cancel", {"job_id": "$response.body#/id"}, None),
        "GetJobEvents": (
            "get",
            "/v1/fine_tuning/jobs/{job_id}/events",
            {"job_id": "$response.body#/id"},
            None,
        ),
        "GetJobCheckpoints": (
            "get",
            "/v1/fine_tuning/jobs/{job_id}/checkpoints",
            {"job_id": "$response.body#/id"},
            None,
        ),  # fmt: skip
        "GetRun": ("get", "/api/runs/{job_id}", {"job_id": "$response.body#/id"}, None),
    },
    ("post", "/v1/fine_tuning/jobs/{job_id}/cancel"): {
        "GetCancelledJob": ("get", "/v1/fine_tuning/jobs/{job_id}", {"job_id": "$response.body#/id"}, None),
        "CancelAgain": (
            "post",
            "/v1/fine_tuning/jobs/{job_id}/cancel",
            {"job_id": "$response.body#/id"},
            None,
        ),
    },
    ("get", "/v1/files"): {
        "GetListedFile": ("get", "/v1/files/{file_id}", {"file_id": "$response.body#/data/0/id"}, None),
        "GetListedFileReport": (
            "get",
            "/api/files/{file_id}/report",
            {"file_id": "$response.body#/data/0/id"},
            None,
        ),  # fmt: skip
        "DeleteListedFile": ("delete", "/v1/files/{file_id}", {"file_id": "$response.body#/data/0/id"}, None),
        "TrainOnListedFile": (
            "post",
            "/v1/fine_tuning/jobs",
            {},
            {"training_file": "$response.body#/data/0/id"},
        ),
    },
    ("get", "/v1/fine_tuning/jobs"): {
        "GetListedJob": (
            "get",
            "/v1/fine_tuning/jobs/{job_id}",
            {"job_id": "$response.body#/data/0/id"},
            None,
        ),
        "CancelListedJob": (
            "post",
            "/v1/fine_tuning/jobs/{job_id}/cancel",
            {"job_id": "$response.body#/data/0/id"},
            None,
        ),  # fmt: skip
        "GetListedJobEvents": (
            "get",
            "/v1/fine_tuning/jobs/{job_id}/events",
            {"job_id": "$response.body#/data/0/id"},
            None,
        ),  # fmt: skip
        "GetListedRun": ("get", "/api/runs/{job_id}", {"job_id": "$response.body#/data/0/id"}, None),
    },
    ("get", "/v1/models"): {
        "GetModel": ("get", "/v1/models/{model_id}", {"model_id": "$response.body#/data/0/id"}, None),
        "ChatWithModel": ("post", "/v1/chat/completions", {}, {"model": "$response.body#/data/0/id"}),
        "CompleteWithModel": ("post", "/v1/completions", {}, {"model": "$response.body#/data/0/id"}),
    },
}


def document(app: FastAPI) -> None:
    """Wrap the app's schema generator (FastAPI builds the schema once, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        return documented(generate())

    app.openapi = openapi  # type: ignore[method-assign]


def documented(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema FastAPI made, with refusals, streams and links described (changed in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components["ErrorBody"] = body
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {"description": "Invalid request", "content": error}
            responses["default"] = {"description": "Refused (OpenAI's error shape)", "content": error}
            if path in STREAMED and "200" in responses:
                responses["200"].setdefault("content", {})["text/event-stream"] = {"schema": EVENT}
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    add_links(schema)
    return schema


def add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})

    def operation(method: str, path: str) -> dict[str, Any] | None:
        return paths.get(path, {}).get(method)

    for (method, path), links in LINKS.items():
        source = operation(method, path)
        if source is None:
            continue
        status = next((code for code in source.get("responses", {}) if code.startswith("2")), None)
        if status is None:
            continue
        for name, (target_method, target_path, parameters, body) in links.items():
            target = operation(target_method, target_path)
            if target is None:  # an app without that operation (the inference-only one)
                continue
            link: dict[str, Any] = {"operationId": target["operationId"]}
            if parameters:
                link["parameters"] = parameters
            if body:
                link["requestBody"] = body
            source["responses"][status].setdefault("links", {})[name] = link
