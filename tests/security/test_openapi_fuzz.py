"""schemathesis against the server's own OpenAPI schema, authenticated, over ASGI, the inference
operations included (a tiny base model answers): no request, however malformed, may get a 500,
and every answer must be what the schema says (status code, content type, body).

Two ways in: every operation on its own (a few cases each in the fast suite, many under `slow`),
and stateful runs that follow the schema's links (`tunery.service.api.openapi.LINKS`): upload a
file, train on it, read, cancel and cancel again the job, its events and checkpoints; list the
models, open one, chat with it.

The dashboard's routes are left out of the published schema; `dashboard_schema` builds one that
holds them (for these tests only), with the headers a browser sends (Origin, Last-Event-ID, the
session cookie), and its cases are sent signed in with the session's CSRF token. Every answer, API
or dashboard, is also searched for a server path (`server_paths_in`)."""

from __future__ import annotations

import site
import sysconfig

import pytest
import schemathesis
from hypothesis import HealthCheck, reject, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response

from tests.security.conftest import chat_lines, in_process_service, upload
from tests.security.server_paths import server_roots
from tests.web.conftest import sign_in, token_in

FAST, SLOW = 4, 60
SCENARIOS, STEPS = 12, 6  # stateful: scenarios of up to STEPS linked calls each (fast suite)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
INFERENCE = ("/v1/chat/completions", "/v1/completions")


SERVER_ROOTS: list[str] = []  # filled by the `api` fixture: the paths no answer may show
# ... but the names the operator publishes (inference_base_models: here the tiny model's folder)
PUBLISHED: list[str] = []


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_model_dir):
    """The server with one project that has a file and a job, so some ids exist, and a tiny base
    model any key may chat with."""
    folder = tmp_path_factory.mktemp("schemathesis")
    with in_process_service(folder, inference_base_models=[str(tiny_model_dir)]) as (client, key_of):
        headers = key_of("team-a")
        file_id = upload(client, headers, "orders.jsonl", chat_lines(4)).json()["id"]
        client.post("/v1/fine_tuning/jobs", headers=headers, json={"model": "m", "training_file": file_id})
        SERVER_ROOTS[:] = fuzz_roots(client.app.state.settings)
        PUBLISHED[:] = client.app.state.settings.inference_base_models
        yield client, headers, str(tiny_model_dir), client.app


def fuzz_roots(settings) -> list[str]:
    """Where the server keeps things (server_paths.server_roots), and its site-packages."""
    return sorted({*server_roots(settings), sysconfig.get_paths()["purelib"], *site.getsitepackages()})


def server_paths_in(body: str, roots: list[str], asked: str = "") -> list[str]:
    """The server paths a body shows; a root the request itself held (an id echoed back) is not counted,
    nor one inside a name the operator published (PUBLISHED)."""
    for name in PUBLISHED:
        body = body.replace(name, "")
    return [root for root in roots if root in body and root not in asked]


def assert_no_server_path(case, response: Response) -> None:
    asked = f"{case.path_parameters} {case.query} {case.headers} {case.cookies} {case.body} {PUBLISHED}"
    text = response.text if hasattr(response, "text") else ""
    shown = server_paths_in(text, SERVER_ROOTS, asked)
    assert shown == [], f"{case.method} {case.formatted_path} answered with server paths {shown}"


def openapi_schema() -> dict:
    """The schema the app publishes (building it needs no database; it is not started here)."""
    from tunery.app import create_app
    from tunery.settings import Settings

    return create_app(Settings(data_dir="/nonexistent")).openapi()


# Loaded at import, not from a fixture: schemathesis' lazy loader trips over pytest 9's node ids.
schema = schemathesis.openapi.from_dict(openapi_schema())
ANY_HEALTH = list(HealthCheck)


def send(case, client, headers: dict) -> Response:
    request = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    for cookie, value in (request.pop("cookies", None) or {}).items():
        client.cookies.set(cookie, value)
    return sent(client, request)


def sent(client, request: dict) -> Response:
    """The answer to a generated request; one httpx cannot encode (a multipart part that is neither
    text nor a file) is no request a client could send: hypothesis drops it."""
    built = client.build_request(**{k: v for k, v in request.items() if k != "follow_redirects"})
    try:
        built.read()
    except (AttributeError, TypeError):
        reject()
    response = client.send(built, follow_redirects=request.get("follow_redirects", True))
    try:
        response.request.read()  # a multipart upload's body, which the checks show when they fail
    except (AttributeError, TypeError):  # a generated file part that is no file: the body is not shown
        response.request._content = b""
    return Response.from_any(response)


def check(case, response: Response) -> None:
    case.validate_response(response, checks=CHECKS)
    assert_no_server_path(case, response)


def with_the_tiny_model(case, model: str) -> None:
    """Most generated inference cases name a model that does not exist (a 404); half of them here
    ask the tiny model instead, so generation runs too."""
    body = case.body
    named = isinstance(body, dict) and isinstance(body.get("model"), str)
    if case.path in INFERENCE and named and len(body["model"]) % 2 == 0:
        body["model"] = model


def one_case(case, api) -> None:
    client, headers, model, _ = api
    with_the_tiny_model(case, model)
    check(case, send(case, client, headers))


@schema.parametrize()
@settings(max_examples=FAST, deadline=None, suppress_health_check=ANY_HEALTH)
def test_no_request_gets_a_server_error_or_an_undocumented_answer(case, api):
    one_case(case, api)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=SLOW, deadline=None, suppress_health_check=ANY_HEALTH)
def test_no_request_gets_a_server_error_or_an_undocumented_answer_long_run(case, api):
    one_case(case, api)


def linked_runs(api, scenarios: int, steps: int) -> None:
    from tunery.service.keys import create_key

    client, _, _, app = api

    class LinkedCalls(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # a key of its own per scenario, in a project of their own: a scenario that revokes a key
            # (DELETE /api/keys/{id}, found through GET /api/keys) can never take the module's key
            # (the later tests then got 401s), and it leaves the next scenario signed in
            with app.state.sessions.begin() as session:
                self.headers = {"Authorization": f"Bearer {create_key(session, 'linked-calls')}"}

        def call(self, case, **kwargs):
            return send(case, client, self.headers)

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            check(case, response)

    LinkedCalls.run(
        settings=settings(
            max_examples=scenarios, stateful_step_count=steps, deadline=None, suppress_health_check=ANY_HEALTH
        )
    )


def test_linked_calls_get_no_server_error_nor_an_undocumented_answer(api):
    linked_runs(api, SCENARIOS, STEPS)


@pytest.mark.slow
def test_linked_calls_get_no_server_error_nor_an_undocumented_answer_long_run(api):
    linked_runs(api, 100, 10)


ANSWERS = [  # generated chat cases rarely hold a valid conversation: these answer, and are checked too
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "n": 2}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "logprobs": True,
                              "top_logprobs": 2, "stop": ["x"], "seed": 1}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
                              "response_format": {"type": "json_object"}}),
    ("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 3, "logprobs": 2, "temperature": 0.5}),
    ("/v1/completions", {"prompt": "a", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), ANSWERS, ids=lambda x: x if isinstance(x, str) else "")
def test_the_inference_answers_are_what_the_schema_says(api, path, body):
    client, headers, model, _ = api
    case = schema[path]["POST"].Case(body={"model": model, **body}, media_type="application/json")
    response = send(case, client, headers)
    assert response.status_code == 200, response.text
    check(case, response)


def test_the_schema_links_what_creates_to_what_reads_cancels_and_deletes_it():
    responses = openapi_schema()["paths"]
    created_file = responses["/v1/files"]["post"]["responses"]["200"]["links"]
    created_job = responses["/v1/fine_tuning/jobs"]["post"]["responses"]["200"]["links"]
    listed_models = responses["/v1/models"]["get"]["responses"]["200"]["links"]
    assert {"GetFile", "DeleteFile", "TrainOnFile"} <= set(created_file)
    assert {"GetJob", "CancelJob", "GetJobEvents"} <= set(created_job)
    assert {"ChatWithModel", "CompleteWithModel"} <= set(listed_models)
    assert created_file["TrainOnFile"]["requestBody"] == {"training_file": "$response.body#/id"}
    refused = responses["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in refused and refused["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "text/event-stream" in refused["200"]["content"]


NOT_FUZZED = ("/signout", "/static")  # signing out would end the session the other cases need
BROWSER_HEADERS = [
    {"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"}},
    {"name": "tunery_session", "in": "cookie", "required": False, "schema": {"type": "string"}},
]
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}


def dashboard_schema() -> dict:
    """An OpenAPI schema of the dashboard's routes (pages, /ui actions, reviews), for these tests only:
    the published one leaves them out. Each operation also takes what a browser may send."""
    import copy

    from fastapi.openapi.utils import get_openapi
    from fastapi.routing import APIRoute

    from tunery.web import actions, pages, reviews

    routes = []
    for router in (pages.router, actions.router, reviews.pages, reviews.actions):
        for route in router.routes:
            if isinstance(route, APIRoute) and not route.path.startswith(NOT_FUZZED):
                shown = copy.copy(route)  # the routers' own routes stay out of the published schema
                shown.include_in_schema = True
                routes.append(shown)
    every = get_openapi(title="tunery dashboard", version="test", routes=routes)
    for path, operations in every["paths"].items():
        for operation in operations.values():
            extra = [*BROWSER_HEADERS, *([LAST_EVENT_ID] if path.endswith("/stream") else [])]
            operation["parameters"] = [*operation.get("parameters", []), *extra]
            operation["responses"] = {"default": {"description": "any"}}  # pages answer HTML
    return every


dashboard = schemathesis.openapi.from_dict(dashboard_schema())


@pytest.fixture(scope="module")
def signed_in(api):
    """The session cookie and CSRF token of team-a signed in on the dashboard (its file and job exist)."""
    client, headers, _, _ = api
    assert sign_in(client, headers["Authorization"].removeprefix("Bearer ")).status_code == 303
    token = token_in(client.get("/jobs").text)
    cookie = client.cookies.get("tunery_session")
    client.cookies.clear()  # sent per case below: a generated cookie must not stay in the jar
    return {"tunery_session": cookie, "X-CSRF-Token": token}


def signed_in_request(case, session: dict) -> dict:
    """A dashboard case as the signed-in browser sends it, unless the case brings its own cookie."""
    request = case.as_transport_kwargs(base_url="http://127.0.0.1")
    cookies = {"tunery_session": session["tunery_session"], **(request.pop("cookies", None) or {})}
    headers = {
        "X-CSRF-Token": session["X-CSRF-Token"],
        "Host": "127.0.0.1",
        **(request.pop("headers", None) or {}),
    }
    headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items() if value.isprintable())
    return {**request, "headers": headers, "follow_redirects": False}


def first_chunk_of_stream(case, client, session: dict) -> None:
    with client.stream(**signed_in_request(case, session)) as answer:
        first = next(answer.iter_text(), "")
    client.cookies.clear()
    assert answer.status_code < 500, (
        f"{case.method} {case.formatted_path}: {answer.status_code} {first[:300]}"
    )
    asked = f"{case.path_parameters} {case.headers} {case.cookies}"
    assert server_paths_in(first, SERVER_ROOTS, asked) == [], first[:300]


def send_signed_in(case, client, session: dict) -> Response:
    try:
        return sent(client, signed_in_request(case, session))
    finally:
        client.cookies.clear()


def one_dashboard_case(case, api, session) -> None:
    client = api[0]
    if case.path.endswith("/stream"):  # a job's live events end only when it does: the first chunk is read
        first_chunk_of_stream(case, client, session)
        return
    response = send_signed_in(case, client, session)
    case.validate_response(response, checks=[not_a_server_error])
    assert_no_server_path(case, response)


@dashboard.parametrize()
@settings(max_examples=FAST, deadline=None, suppress_health_check=ANY_HEALTH)
def test_no_dashboard_request_gets_a_server_error_or_shows_a_server_path(case, api, signed_in):
    one_dashboard_case(case, api, signed_in)


@pytest.mark.slow
@dashboard.parametrize()
@settings(max_examples=SLOW, deadline=None, suppress_health_check=ANY_HEALTH)
def test_no_dashboard_request_gets_a_server_error_or_shows_a_server_path_long_run(case, api, signed_in):
    one_dashboard_case(case, api, signed_in)


def test_server_paths_in_finds_a_root_unless_the_request_held_it():
    roots = ["/srv/tunery/artifacts", "/home/me"]
    assert server_paths_in('{"error": "no file /srv/tunery/artifacts/files/x"}', roots) == roots[:1]
    assert server_paths_in("no job '/home/me/x'", roots, asked="/home/me/x") == []
    assert server_paths_in("all fine", roots) == []
