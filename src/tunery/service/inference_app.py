"""The inference API alone: no database, no keys, no jobs (`tunery serve --inference-only`).

app = create_inference_app(models={"smol": ("base", "smollm2-135m-instruct"), "orders": ("run", "runs/a")})
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from tunery.service.api import errors, openapi
from tunery.service.api.routes import inference
from tunery.service.domain.inference import default_limits
from tunery.service.limits import BodyLimit
from tunery.version import __version__


def create_inference_app(models: dict[str, tuple[str, str]], max_adapters: int = 8) -> FastAPI:
    """`models`: name -> ("base", model alias or path) or ("run", run directory)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.inference_models, app.state.max_adapters = models, max_adapters
        yield
        if getattr(app.state, "engine", None) is not None:
            app.state.engine.stop()

    app = FastAPI(title="tunery inference", version=__version__, lifespan=lifespan)
    errors.install(app)
    defaults = default_limits()  # the service's settings' defaults: this app reads no settings
    app.add_middleware(
        BodyLimit,
        max_upload_bytes=defaults["max_request_bytes"],
        max_request_bytes=defaults["max_request_bytes"],
    )
    app.include_router(inference.router)

    @app.get("/health", tags=["health"])
    def health() -> dict:
        return {"status": "ok", "mode": "inference-only"}

    @app.get("/v1/models", tags=["models"])
    def list_models() -> dict:
        entries = [{"id": name, "object": "model", "created": 0, "owned_by": "tunery"} for name in models]
        return {"object": "list", "data": entries}

    openapi.document(app)
    return app
