"""Answering completions: the model a name serves, admission, the engine, the answer or its chunk stream.

    answer = await chat(app.state, project, ChatRequest(...), key="key-id", disconnected=is_gone)
    # a dict, or an async iterator of `data: ...` lines when stream=True

`model` is a fine-tuned model id from the project's registry (`ft:...`), one of its checkpoints
(`ft:...:ckpt-step-N`), a base model the settings list (`inference_base_models`) or the base of one
of the project's models, or (standalone, `tunery serve --inference-only`, project None) a name given
with --model/--adapter or a run directory. `state` is the app's state: `sessions` and `settings`
(none standalone), `inference_models`, `max_adapters`, and the `engine` (`tunery.serve.engine`,
torch), started here on first use. The REST API and the dashboard's playground both answer here.

Admission: a request asks for n x prompts rows (answers); beyond `max_inference_rows_per_request`
it is refused (400), and beyond the rows its key or project may have in flight it is told to retry
(429). A row leaves the count when its answer ends or its client goes away (`Stream.on_close`),
whichever first; a client that goes away cancels its rows, streaming or not.

Messages users see never name server paths: a failure's full text goes to the server log with the
request id, and the answer gives that id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import anyio.to_thread

from tunery.service.domain.references import resolve_model, visible_models
from tunery.service.errors import ApiError
from tunery.service.schemas.inference import (
    ChatRequest,
    CompletionRequest,
    SamplingFields,
    completion_id,
    envelope,
    usage,
)
from tunery.settings import Settings

log = logging.getLogger("tunery.inference")
_engine_lock = threading.Lock()
Answer = dict | AsyncIterator[str]
Disconnected = Callable[[], Awaitable[bool]]
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:]+){2,}[\\/]?")
DISCONNECT_POLL_S = 0.1


class Busy(ApiError):
    """Too many rows in flight for a key or project: 429, and when to try again."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(429, message, code="rate_limit_exceeded")
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}  # answered with it wherever it is raised


class Admission:
    """Rows (answers) in flight per key and per project; thread-safe, released row by row.

    Before its rows are admitted, a request's blocking work (its key's look-up; the model's
    look-up and its prompts' encoding) runs in a thread behind its key's `gate`: at most
    `preparing` such threads per key, so a key with hundreds of requests in flight holds a couple of
    the thread pool's threads, and another key's request never queues behind all of them."""

    preparing = 2

    def __init__(self, per_key: int, per_project: int):
        self.per_key, self.per_project = per_key, per_project
        self.keys: Counter[str] = Counter()
        self.projects: Counter[str] = Counter()
        self.digests: dict[str, str] = {}  # a Bearer secret's digest -> its key id, once looked up
        self._gates: weakref.WeakValueDictionary[str, anyio.CapacityLimiter] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def gate(self, caller: str) -> anyio.CapacityLimiter:
        """The threads one caller's requests (a key, or a secret's digest before its look-up) may
        hold at once; on the event loop only. Kept while some request holds it."""
        found = self._gates.get(caller)
        if found is None:
            found = self._gates[caller] = anyio.CapacityLimiter(self.preparing)
        return found

    def reserve(self, key: str | None, project: str | None, rows: int) -> Callable[[], None]:
        """Count `rows` rows in, or raise Busy; the returned function releases one of them."""
        with self._lock:
            self._refuse_beyond(key, project, rows)
            self.keys[key or ""] += rows
            self.projects[project or ""] += rows
        return partial(self._release, key or "", project or "")

    def check(self, key: str | None, project: str | None, rows: int) -> None:
        """Raise Busy now if `rows` more would be refused: a client retrying in a loop is told so
        before its prompts are encoded (`reserve` still decides, later)."""
        with self._lock:
            self._refuse_beyond(key, project, rows)

    def refuse_full(self, digest: str) -> None:
        """Busy for a key whose rows in flight are at its limit, known by its secret's digest alone:
        a client retrying in a loop is refused before its key is looked up (no thread, no database;
        its rows in flight show the key was live a moment ago)."""
        with self._lock:
            key = self.digests.get(digest)
            if key is not None and self.keys[key] >= self.per_key:
                raise Busy(
                    f"this API key has {self.keys[key]} answers in flight (limit {self.per_key}): retry later"
                )

    def remember(self, digest: str, key: str) -> None:
        with self._lock:
            self.digests[digest] = key

    def _refuse_beyond(self, key: str | None, project: str | None, rows: int) -> None:
        if key is not None and self.keys[key] + rows > self.per_key:
            raise Busy(
                f"this API key has {self.keys[key]} answers in flight (limit {self.per_key}): retry later"
            )
        if project is not None and self.projects[project] + rows > self.per_project:
            raise Busy(
                f"project has {self.projects[project]} answers in flight (limit {self.per_project}): retry later"
            )

    def _release(self, key: str, project: str) -> None:
        with self._lock:
            self.keys[key] -= 1
            self.projects[project] -= 1

    def in_flight(self, key: str | None = None, project: str | None = None) -> int:
        with self._lock:
            return self.keys[key] if key is not None else self.projects[project or ""]


def settings_of(state: Any) -> Settings:
    """The service's settings; standalone (none), their defaults."""
    settings = getattr(state, "settings", None)
    if settings is None:
        settings = state.settings = Settings.model_construct(**default_limits())
    return settings


def default_limits() -> dict[str, Any]:
    fields = Settings.model_fields
    names = (
        "max_inference_rows_per_request", "max_inference_rows_per_key", "max_inference_rows_per_project",
        "max_prompt_bytes", "max_request_bytes",
    )  # fmt: skip
    return {name: fields[name].default for name in names} | {"inference_base_models": []}


def admission_of(state: Any) -> Admission:
    with _engine_lock:
        if getattr(state, "admission", None) is None:
            settings = settings_of(state)
            state.admission = Admission(
                settings.max_inference_rows_per_key, settings.max_inference_rows_per_project
            )
        return state.admission


async def in_thread(function: Callable, *args: Any, gate: anyio.CapacityLimiter | None = None) -> Any:
    """Run blocking work (loading a model, the database) off the event loop; within `gate`'s
    threads when given (see `Admission`), else the shared pool's."""
    return await anyio.to_thread.run_sync(partial(function, *args), limiter=gate)


async def chat(
    state: Any,
    project: str | None,
    body: ChatRequest,
    key: str | None = None,
    disconnected: Disconnected | None = None,
) -> Answer:
    """`/v1/chat/completions`: the conversation through the model's chat template."""
    rows_allowed(state, body.n, "n")
    prompt_allowed(state, body.prompt_bytes(), "messages")
    admission_of(state).check(key, project, body.n)  # before encoding: a client retrying in a loop
    messages = [m.as_template_input() for m in body.messages]
    caller = Caller(state, project, key, disconnected)
    work = await prepared(caller, body, lambda engine, target: [engine.encode_chat(target, messages)])
    return await respond(work, body, caller, chat=True)


async def complete(
    state: Any,
    project: str | None,
    body: CompletionRequest,
    key: str | None = None,
    disconnected: Disconnected | None = None,
) -> Answer:
    """`/v1/completions`: each prompt as plain text."""
    rows_allowed(state, len(body.prompts()) * body.n, "prompt")  # before encoding a thousand prompts
    prompt_allowed(state, body.prompt_bytes(), "prompt")
    admission_of(state).check(key, project, len(body.prompts()) * body.n)  # and before encoding them
    texts = body.prompts()
    caller = Caller(state, project, key, disconnected)
    work = await prepared(caller, body, lambda engine, target: encode_each(engine.encode_text, target, texts))
    return await respond(work, body, caller, chat=False)


class Prepared(NamedTuple):
    """What a request's rows need before admission, found in one thread hop."""

    engine: Any
    target: Any
    prompts: list[list[int]]
    context: int | None  # the model's most positions, if it says
    vocab: int | None  # token ids the model scores, when logit_bias asks


async def prepared(caller: Caller, body: SamplingFields, encoder: Callable[[Any, Any], list[list[int]]]):
    """The target, engine, encoded prompts and model limits, in one thread within the caller's gate
    (each hop of a request would queue again behind every other request's)."""

    def work() -> Prepared:
        target = resolve_target(caller.state, caller.project, body.model)
        engine = engine_of(caller.state)
        try:
            prompts = encoder(engine, target)
        except (ValueError, TypeError) as err:  # a chat template that rejects the conversation, ...
            raise ApiError(
                400, f"cannot encode the prompt: {scrub(str(err))}", code="invalid_prompt"
            ) from None
        vocab = engine.vocab_size(target) if body.logit_bias else None
        return Prepared(engine, target, prompts, engine.context_length(target), vocab)

    gate = admission_of(caller.state).gate(caller.key or caller.project or "")
    return await in_thread(work, gate=gate)


class Caller:
    """Who asks (project and key, for admission and fair turns) and how to tell they have gone."""

    def __init__(self, state: Any, project: str | None, key: str | None, disconnected: Disconnected | None):
        self.state, self.project, self.key, self.disconnected = state, project, key, disconnected

    @property
    def owner(self) -> str:
        return self.project or self.key or ""


def rows_allowed(state: Any, rows: int, param: str) -> None:
    limit = settings_of(state).max_inference_rows_per_request
    if rows > limit:
        raise ApiError(
            400,
            f"this request asks for {rows} answers (n x prompts); at most {limit} per request: "
            "send fewer prompts or a lower n",
            code="too_many_rows",
            param=param,
        )


def prompt_allowed(state: Any, size: int, param: str) -> None:
    """Refused by its bytes before it is tokenised: a 10 MB prompt took 15 s and 2.4 GB of memory to
    tokenise, only to be refused by the model's context afterwards."""
    limit = settings_of(state).max_prompt_bytes
    if size > limit:
        raise ApiError(
            400, f"the prompt is {size} bytes (UTF-8); this server takes at most {limit}: shorten it",
            code="prompt_too_large", param=param,
        )  # fmt: skip


def engine_of(state: Any):
    """The app's engine, started on the first inference request."""
    with _engine_lock:
        if getattr(state, "engine", None) is None:
            from tunery.serve.engine import Engine

            state.engine = Engine(max_adapters=getattr(state, "max_adapters", 8)).start()
        return state.engine


def resolve_target(state: Any, project: str | None, name: str):
    """The Target a model name serves; 404 in OpenAI's shape when there is none."""
    from tunery.models import ModelNotFoundError

    try:
        if found := find_target(state, project, name):
            return found
    except ModelNotFoundError as err:
        raise refused(404, f"model '{name}' cannot be loaded", err, code=err.code) from None
    except FileNotFoundError as err:  # a registered model whose run directory is gone
        raise refused(
            404, f"model '{name}' cannot be loaded: its files are gone", err, code="model_not_found"
        ) from None
    except ValueError as err:
        raise refused(
            400, f"model '{name}' cannot be served: {scrub(str(err))}", err, code="model_not_servable"
        ) from None
    raise ApiError(404, f"The model '{name}' does not exist", code="model_not_found", param="model")


def find_target(state: Any, project: str | None, name: str):
    from tunery.serve.engine import Target

    named = getattr(state, "inference_models", {})
    if name in named:
        kind, where = named[name]
        return Target.for_base(where) if kind == "base" else Target.for_run(where)
    if project is None:
        return Target.for_run(name) if (Path(name) / "adapter").is_dir() else None  # standalone: a run folder
    if name in settings_of(state).inference_base_models:
        return Target.for_base(name)
    return registry_target(state, project, name)


def registry_target(state: Any, project: str, name: str):
    """A project's fine-tuned model (its run directory), one of its checkpoints, a local model the
    server's roots allow, or a base model of one of its models (references.py decides)."""
    from tunery.serve.engine import Target
    from tunery.store.tables import Model

    settings = state.settings
    with read_sessions(state)() as session:
        try:
            ref = resolve_model(session, project, settings, name)
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        if ref.model is not None and ref.checkpoint is not None:
            folder = settings.artifacts / ref.checkpoint.path
            return Target.for_checkpoint(ref.load, folder) if folder.is_dir() else None
        if ref.model is not None:
            return Target.for_run(ref.load)
        base = session.scalar(visible_models(project).where(Model.base_model == name).limit(1))
    return Target.for_base(ref.load) if base is not None else None


def read_sessions(state: Any):
    """Sessions that only read (the key check and model look-up of every inference request): on
    SQLite they take no write lock, so a flood of requests never queues everyone's behind it."""
    if getattr(state, "read_sessions", None) is None:
        from tunery.store.session import read_only_factory

        state.read_sessions = read_only_factory(state.sessions)
    return state.read_sessions


def scrub(message: str) -> str:
    """The message without server paths (a user sees it; the log keeps the original)."""
    return _PATH.sub("<path>", message)


def refused(status: int, message: str, err: BaseException, code: str | None) -> ApiError:
    """A refusal whose cause may name server paths: the cause goes to the log under a request id."""
    request_id = uuid.uuid4().hex[:16]
    log.warning("inference request %s refused (%s): %s: %s", request_id, code, type(err).__name__, err)
    return ApiError(status, f"{message} (request id {request_id})", code=code, param="model")


def sampling_for(body: SamplingFields, choice: int, max_tokens: int):
    from tunery.serve.engine import Sampling

    return Sampling(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=None if body.seed is None else body.seed + choice,  # n choices differ, yet repeat
        stop=body.stops(),
        logit_bias=tuple(body.bias().items()),
        frequency_penalty=body.frequency_penalty,
        presence_penalty=body.presence_penalty,
        logprobs=getattr(body, "logprob_count", None),
        json_mode=body.json_mode,
    )


def encode_each(encoder, target, texts: list[str]) -> list[list[int]]:
    return [encoder(target, text) for text in texts]


def max_tokens_for(prompt: list[int], body: SamplingFields, chat: bool, context: int | None) -> int:
    """The answer length asked for, else the default within the model's context; a request that
    cannot fit is refused as OpenAI does (400, `context_length_exceeded`) rather than generating
    past the context."""
    asked = body.max_completion_tokens or body.max_tokens
    default = 512 if chat else 16
    if context is None:
        return asked or default
    if len(prompt) >= context or (asked and len(prompt) + asked > context):
        wanted = f"{len(prompt)} in the prompt" + (f" and {asked} in the completion" if asked else "")
        raise ApiError(
            400,
            f"{body.model} takes at most {context} tokens, prompt and completion together; this request "
            f"needs {wanted}: shorten the messages or lower max_tokens",
            code="context_length_exceeded",
            param=("messages" if chat else "prompt") if len(prompt) >= context else "max_tokens",
        )
    return asked or min(default, context - len(prompt))


def check_bias(body: SamplingFields, vocab: int) -> None:
    if beyond := [token for token in body.bias() if token >= vocab]:
        raise ApiError(
            400,
            f"logit_bias names token {beyond[0]}, beyond this model's {vocab} tokens: use ids below {vocab}",
            code="invalid_logit_bias",
            param="logit_bias",
        )


async def respond(work: Prepared, body: SamplingFields, caller: Caller, chat: bool) -> Answer:
    """Check, admit and submit every row; the answer as a whole or as its chunk stream."""
    engine, target, prompts = work.engine, work.target, work.prompts
    rows_allowed(caller.state, len(prompts) * body.n, "n" if chat else "prompt")
    max_tokens = [max_tokens_for(prompt, body, chat, work.context) for prompt in prompts]
    if work.vocab is not None:
        check_bias(body, work.vocab)
    release = admission_of(caller.state).reserve(caller.key, caller.project, len(prompts) * body.n)
    loop = asyncio.get_running_loop()
    submit = partial(engine.submit, loop=loop, owner=caller.owner, on_close=release, whole=not body.stream)
    streams = [
        submit(target, prompt, sampling_for(body, i * body.n + j, max_tokens[i]))
        for i, prompt in enumerate(prompts)
        for j in range(body.n)
    ]
    wants = getattr(body, "logprob_count", None) is not None
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse(streams, body.model, chat, include_usage, wants)
    try:
        answers = await collect_all(streams, caller.disconnected, wants)
    finally:
        for stream in streams:
            stream.cancel()  # a no-op for finished rows; stops the rest when the client is gone
    return whole_answer(answers, prompts, body.model, chat)


def whole_answer(answers: list, prompts: list[list[int]], model: str, chat: bool) -> dict:
    choices = []
    for i, (text, finish, logprobs) in enumerate(answers):
        if chat:
            content = None if logprobs is None else {"content": chat_logprobs(logprobs), "refusal": None}
            message = {"role": "assistant", "content": text}
            choices.append(
                {"index": i, "message": message, "finish_reason": finish.reason, "logprobs": content}
            )
        else:
            legacy = None if logprobs is None else completion_logprobs(logprobs)
            choices.append({"index": i, "text": text, "finish_reason": finish.reason, "logprobs": legacy})
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(finish.completion_tokens for _, finish, _ in answers)
    kind = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
    return envelope(
        completion_id(kind[0]), kind[1], model, choices, usage=usage(prompt_tokens, completion_tokens)
    )


def chat_logprobs(entries: list) -> list[dict]:
    """OpenAI's chat shape: choices[].logprobs.content[] of token, logprob, bytes, top_logprobs."""

    def one(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return [
        {**one(entry.token, entry.logprob), "top_logprobs": [one(t, lp) for t, lp in entry.top]}
        for entry in entries
    ]


def completion_logprobs(entries: list) -> dict:
    """The legacy completions shape: tokens, token_logprobs, top_logprobs (dicts), text_offset."""
    offsets, at = [], 0
    for entry in entries:
        offsets.append(at)
        at += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [dict(entry.top) for entry in entries],
        "text_offset": offsets,
    }


async def collect_all(streams, disconnected: Disconnected | None, wants: bool) -> list:
    """Every row's answer; stops early (the caller cancels the rows) when the client goes away."""
    gather = asyncio.ensure_future(asyncio.gather(*(collect(stream, wants) for stream in streams)))
    try:
        while disconnected is not None and not gather.done():
            await asyncio.wait([gather], timeout=DISCONNECT_POLL_S)
            if not gather.done() and await disconnected():
                raise ApiError(499, "the client closed the connection", code="client_closed_request")
        return await gather
    finally:
        if not gather.done():
            gather.cancel()


def failed(message: str) -> str:
    """What the user sees of a generation failure; the full message goes to the log."""
    request_id = uuid.uuid4().hex[:16]
    log.error("inference request %s failed: %s", request_id, message)
    return f"generation failed (request id {request_id}): {scrub(message)}"


async def collect(stream, wants: bool) -> tuple[str, Any, list | None]:
    from tunery.serve.engine import Failure, Token

    pieces, logprobs = [], []
    async for event in stream.aevents():
        if isinstance(event, Token):
            pieces.append(event.text)
            logprobs.extend(event.logprobs)
        elif isinstance(event, Failure):
            raise ApiError(500, failed(event.message), code="generation_failed")
        else:
            return "".join(pieces), event, logprobs if wants else None
    raise ApiError(500, failed("the answer ended without finishing"), code="generation_failed")


async def sse(streams, model: str, chat: bool, include_usage: bool, wants: bool):
    """OpenAI's chunk stream: `data: {...}` events, choices one after another, then `data: [DONE]`.
    When the client goes away the response stops iterating here, and every row is cancelled."""
    try:
        async for line in chunks(streams, model, chat, include_usage, wants):
            yield line
    finally:
        for stream in streams:
            stream.cancel()


async def chunks(streams, model: str, chat: bool, include_usage: bool, wants: bool):
    from tunery.serve.engine import Failure, Token

    kind = ("chatcmpl", "chat.completion.chunk") if chat else ("cmpl", "text_completion")
    id, prompt_tokens, completion_tokens = completion_id(kind[0]), 0, 0

    def chunk(choices: list[dict], **extra) -> str:
        return f"data: {json.dumps(envelope(id, kind[1], model, choices, **extra))}\n\n"

    for index, stream in enumerate(streams):
        if chat:
            yield chunk([chunk_choice(chat, index, None, None, None, first=True)])
        async for event in stream.aevents():
            if isinstance(event, Token):
                yield chunk([chunk_choice(chat, index, event.text, None, event.logprobs if wants else None)])
            elif isinstance(event, Failure):
                error = {"message": failed(event.message), "type": "api_error", "code": "generation_failed"}
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
            else:
                prompt_tokens = event.prompt_tokens
                completion_tokens += event.completion_tokens
                yield chunk([chunk_choice(chat, index, None, event.reason, None)])
    if include_usage:
        yield chunk([], usage=usage(prompt_tokens, completion_tokens))
    yield "data: [DONE]\n\n"


def chunk_choice(
    chat: bool, index: int, text: str | None, finish: str | None, logprobs, first: bool = False
) -> dict:
    if not chat:
        legacy = completion_logprobs(logprobs) if logprobs is not None else None
        return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": legacy}
    delta = {"role": "assistant", "content": ""} if first else {} if text is None else {"content": text}
    content = {"content": chat_logprobs(logprobs), "refusal": None} if logprobs is not None else None
    return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": content}
