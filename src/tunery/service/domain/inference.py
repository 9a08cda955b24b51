"""Answering completions: the model a name serves, the engine, the answer or its OpenAI chunk stream.

    answer = await chat(app.state, project, ChatRequest(...))   # a dict, or an async iterator of
                                                                # `data: ...` lines when stream=True

`model` is a fine-tuned model id from the project's registry (`ft:...`), the base model of one of
them, or (standalone, `tunery serve --inference-only`, project None) a name given with
--model/--adapter or a run directory. `state` is the app's state: `sessions` and `settings` (none
standalone), `inference_models`, `max_adapters`, and the `engine` (`tunery.serve.engine`, torch),
started here on first use. The REST API and the dashboard's playground both answer through here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread

from tunery.service.errors import ApiError
from tunery.service.schemas.inference import (
    ChatRequest,
    CompletionRequest,
    SamplingFields,
    completion_id,
    envelope,
    usage,
)

_engine_lock = threading.Lock()
Answer = dict | AsyncIterator[str]


async def in_thread(function: Callable, *args: Any) -> Any:
    """Run blocking work (loading a model, the database) off the event loop."""
    return await anyio.to_thread.run_sync(partial(function, *args))


async def chat(state: Any, project: str | None, body: ChatRequest) -> Answer:
    """`/v1/chat/completions`: the conversation through the model's chat template."""
    target = await in_thread(resolve_target, state, project, body.model)
    engine = await in_thread(engine_of, state)
    prompt = await encode(engine.encode_chat, target, [m.as_template_input() for m in body.messages])
    return await respond(engine, target, [prompt], body, chat=True)


async def complete(state: Any, project: str | None, body: CompletionRequest) -> Answer:
    """`/v1/completions`: each prompt as plain text."""
    target = await in_thread(resolve_target, state, project, body.model)
    engine = await in_thread(engine_of, state)
    prompts = [await encode(engine.encode_text, target, text) for text in body.prompts()]
    return await respond(engine, target, prompts, body, chat=False)


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
    from tunery.serve.engine import Target

    try:
        named = getattr(state, "inference_models", {})
        if name in named:
            kind, where = named[name]
            return Target.for_base(where) if kind == "base" else Target.for_run(where)
        if project is None:
            if (Path(name) / "adapter").is_dir():  # standalone: any run directory
                return Target.for_run(name)
        elif found := registry_target(state, project, name):
            return found
    except ModelNotFoundError as err:
        raise ApiError(404, f"model '{name}' cannot be loaded: {err}", code=err.code, param="model") from None
    except FileNotFoundError as err:  # a registered model whose run directory is gone
        raise ApiError(
            404, f"model '{name}' cannot be loaded: {err}", code="model_not_found", param="model"
        ) from None
    except ValueError as err:
        raise ApiError(400, str(err), code="model_not_servable", param="model") from None
    raise ApiError(404, f"The model '{name}' does not exist", code="model_not_found", param="model")


def registry_target(state: Any, project: str, name: str):
    """A project's fine-tuned model (its run directory), or the base model of one of them."""
    from sqlalchemy import select

    from tunery.serve.engine import Target
    from tunery.store.tables import Model

    with state.sessions() as session:
        model = session.scalar(select(Model).where(Model.id == name, Model.project == project))
        if model is not None:
            return Target.for_run((state.settings.artifacts / model.path).parent)
        base = session.scalar(select(Model).where(Model.base_model == name, Model.project == project))
    return Target.for_base(name) if base is not None else None


def sampling_for(body: SamplingFields, choice: int, max_tokens: int):
    from tunery.serve.engine import Sampling

    return Sampling(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=None if body.seed is None else body.seed + choice,  # n choices differ, yet repeat
        stop=body.stops(),
    )


async def encode(encoder, target, content) -> list[int]:
    try:
        return await in_thread(encoder, target, content)
    except (ValueError, TypeError) as err:  # a chat template that rejects the conversation, ...
        raise ApiError(400, f"cannot encode the prompt: {err}", code="invalid_prompt") from None


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


async def respond(engine, target, prompts: list[list[int]], body: SamplingFields, chat: bool) -> Answer:
    import asyncio

    loop = asyncio.get_running_loop()
    context = await in_thread(engine.context_length, target)
    max_tokens = [max_tokens_for(prompt, body, chat, context) for prompt in prompts]
    streams = [
        engine.submit(target, prompt, sampling_for(body, i * body.n + j, max_tokens[i]), loop)
        for i, prompt in enumerate(prompts)
        for j in range(body.n)
    ]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse(streams, body.model, chat, include_usage)
    answers = [await collect(stream) for stream in streams]
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish.reason,
            "logprobs": None,
        }
        if chat
        else {"index": i, "text": text, "finish_reason": finish.reason, "logprobs": None}
        for i, (text, finish) in enumerate(answers)
    ]
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(finish.completion_tokens for _, finish in answers)
    kind = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
    return envelope(
        completion_id(kind[0]), kind[1], body.model, choices, usage=usage(prompt_tokens, completion_tokens)
    )


async def collect(stream):
    from tunery.serve.engine import Failure, Token

    pieces = []
    async for event in stream.aevents():
        if isinstance(event, Token):
            pieces.append(event.text)
        elif isinstance(event, Failure):
            raise ApiError(500, f"generation failed: {event.message}", code="generation_failed")
        else:
            return "".join(pieces), event


async def sse(streams, model: str, chat: bool, include_usage: bool):
    """OpenAI's chunk stream: `data: {...}` events, choices one after another, then `data: [DONE]`."""
    from tunery.serve.engine import Failure, Token

    kind = ("chatcmpl", "chat.completion.chunk") if chat else ("cmpl", "text_completion")
    id, prompt_tokens, completion_tokens = completion_id(kind[0]), 0, 0

    def chunk(choices: list[dict], **extra) -> str:
        return f"data: {json.dumps(envelope(id, kind[1], model, choices, **extra))}\n\n"

    def choice(index: int, text: str | None, finish: str | None, first: bool = False) -> dict:
        if not chat:
            return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        delta = {"role": "assistant", "content": ""} if first else {} if text is None else {"content": text}
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}

    for index, stream in enumerate(streams):
        if chat:
            yield chunk([choice(index, None, None, first=True)])
        async for event in stream.aevents():
            if isinstance(event, Token):
                yield chunk([choice(index, event.text, None)])
            elif isinstance(event, Failure):
                yield f"data: {json.dumps({'error': {'message': event.message, 'type': 'api_error'}})}\n\n"
                return
            else:
                prompt_tokens, completion_tokens = (
                    event.prompt_tokens,
                    completion_tokens + event.completion_tokens,
                )
                yield chunk([choice(index, None, event.reason)])
    if include_usage:
        yield chunk([], usage=usage(prompt_tokens, completion_tokens))
    yield "data: [DONE]\n\n"
