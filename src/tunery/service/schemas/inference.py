"""Requests and responses of `/v1/chat/completions` and `/v1/completions`, in OpenAI's shape.

Every number has bounds here, at the edge, so a hostile value is a 400 naming its `param` before
any work starts (and before a stream opens), never an overflow deep in the engine. Each OpenAI
field is honoured or refused: the ones tunery cannot honour (`tools`, `echo`, `best_of` > 1,
image and audio parts, `json_schema`) are a 400 naming the field rather than silently ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STOPS, MAX_STOP_CHARS = 4, 256
MAX_LOGIT_BIAS = 300  # entries; OpenAI's own limit
MAX_TOKENS_LIMIT = 1_000_000  # far above any context; the context check gives the precise refusal

Seed = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, description="Within int64; seed + n - 1 too.")]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]


class Refused(ValueError):
    """An OpenAI field tunery does not honour; the message names it and what to do instead.

    `param` is the field, relative to where the check runs; the API's error handler reads it
    (pydantic keeps the exception in the error's `ctx`) to name the full `param`."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart] | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported_content(cls, data: Any) -> Any:
        """Image and audio parts and tool calls are refused by name, not read as empty text."""
        if not isinstance(data, dict):
            return data
        for field in ("tool_calls", "function_call"):
            if data.get(field) is not None:
                raise Refused(field, f"{field} is not supported: tunery serves no tools")
        content = data.get("content")
        if content is None and data.get("role") != "assistant":
            raise Refused("content", "content is required: give the message's text (a string or text parts)")
        for index, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("image_url", "input_audio", "file", "image", "audio"):
                raise Refused(
                    f"content[{index}].type",
                    f"content parts of type '{kind}' are not supported: tunery serves text models",
                )
        return data

    def as_template_input(self) -> dict:
        """Text parts joined; "developer" is the newer name of "system"."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content or ""}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]

    @field_validator("type")
    @classmethod
    def _no_schema(cls, kind: str) -> str:
        if kind == "json_schema":
            raise Refused(
                "type",
                "'json_schema' is not supported: use {'type': 'json_object'} (the answer is valid JSON)",
            )
        return kind


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")  # fields of no effect (user, metadata, store, ...) are ignored
    model: str = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = None
    stop: str | list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]] | None = Field(
        None, max_length=MAX_STOPS
    )
    n: int = Field(1, ge=1, le=16)
    frequency_penalty: Penalty = 0.0
    presence_penalty: Penalty = 0.0
    logit_bias: dict[str, Bias] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # refused unless they ask for nothing: tunery serves no tools, never echoes, samples once per choice
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    best_of: int | None = Field(None, ge=1, le=16)

    @field_validator("stop")
    @classmethod
    def _short_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, str) and len(stop) > MAX_STOP_CHARS:
            raise ValueError(f"a stop string has at most {MAX_STOP_CHARS} characters")
        return stop

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key in bias or {}:
            if not key.isdigit() or int(key) > INT64_MAX:
                raise ValueError(f"logit_bias keys are token ids (non-negative integers), not '{key[:40]}'")
        return bias

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> SamplingFields:
        for field in ("tools", "functions"):
            if getattr(self, field):
                raise Refused(field, f"{field} is not supported: tunery serves no tools; leave it out")
        for field in ("tool_choice", "function_call"):
            if getattr(self, field) not in (None, "none"):
                raise Refused(field, f"{field} is not supported: tunery serves no tools; leave it out")
        if self.best_of is not None and self.best_of > 1:
            raise Refused("best_of", "best_of > 1 is not supported: ask for n choices and pick one yourself")
        return self

    def rows_per_prompt(self) -> int:
        return self.n

    def check_seed_range(self, rows: int) -> None:
        """seed + i seeds row i; the last one must stay within int64 too."""
        if self.seed is not None and self.seed + rows - 1 > INT64_MAX:
            raise Refused(
                "seed",
                f"seed + {rows - 1} (one seed per choice) is beyond int64: use a seed below 2**63 - {rows}",
            )

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return tuple(s for s in stops if s)

    def bias(self) -> dict[int, float]:
        return {int(token): value for token, value in (self.logit_bias or {}).items()}

    @property
    def json_mode(self) -> bool:
        return self.response_format is not None and self.response_format.type == "json_object"


class ChatRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1, max_length=4096)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @model_validator(mode="after")
    def _checks(self) -> ChatRequest:
        self.check_seed_range(self.n)
        if self.top_logprobs and not self.logprobs:
            raise Refused("top_logprobs", "top_logprobs needs logprobs: true")
        return self

    def prompt_bytes(self) -> int:
        """The UTF-8 bytes of the messages' texts together (parts included): what would be tokenised."""
        return sum(utf8_size(m.as_template_input()["content"]) for m in self.messages)

    @property
    def logprob_count(self) -> int | None:
        """How many alternatives to report per token; None: no logprobs."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] = Field(min_length=1)
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False

    @model_validator(mode="after")
    def _checks(self) -> CompletionRequest:
        if self.echo:
            raise Refused("echo", "echo is not supported: the prompt is yours already; leave echo out")
        self.check_seed_range(self.n * len(self.prompts()))
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    def prompt_bytes(self) -> int:
        """The UTF-8 bytes of the prompts together: what would be tokenised."""
        return sum(utf8_size(prompt) for prompt in self.prompts())

    @property
    def logprob_count(self) -> int | None:
        return self.logprobs


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AnswerMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None


class ChatChoice(BaseModel):
    index: int
    message: AnswerMessage
    finish_reason: Literal["stop", "length"] | None
    logprobs: dict[str, Any] | None = None  # {"content": [...], "refusal": None} when asked


class ChatCompletion(BaseModel):
    """A whole chat answer (the schema documents it; the domain layer builds the dict)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: dict[str, Any] | None = None  # tokens, token_logprobs, top_logprobs, text_offset


class TextCompletion(BaseModel):
    """A whole text completion."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(id: str, object: str, model: str, choices: list[dict], **extra: Any) -> dict:
    return {
        "id": id,
        "object": object,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        **extra,
    }
