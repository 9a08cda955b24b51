"""`POST /api/models/{id}/export`: the request and the export's status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = Field("gguf", max_length=20, description="gguf (llama.cpp, Ollama, LM Studio).")
    quant: str = Field("q8_0", max_length=20, description="f32, f16, q8_0, q5_1, q5_0, q4_1 or q4_0.")


class ExportStatus(BaseModel):
    id: str
    object: Literal["model.export"] = "model.export"
    model: str
    format: str
    quant: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    message: str
    error: dict[str, Any] | None
    file: str | None
    created_at: int
    updated_at: int
