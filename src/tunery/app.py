"""The FastAPI app: routers, error shape, and the worker (local) or dispatcher (Celery) in its lifespan.

uvicorn --factory tunery.app:create_app      # or: tunery serve

The composition root: the API (tunery.service) and the dashboard (tunery.web) in one app.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from tunery import web
from tunery.service.api import errors, openapi
from tunery.service.api.routes import datasets, files, health, inference, jobs, keys, models, registry, runs
from tunery.service.api.routes import exports as model_exports
from tunery.service.api.routes import reviews as blind_reviews
from tunery.service.limits import BodyLimit, InferenceGate
from tunery.settings import Settings
from tunery.version import __version__


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from tunery.models import import_model_libraries
        from tunery.service.domain.reviews import resume_generation
        from tunery.store import connect, session_factory

        import_model_libraries()  # before request threads: transformers' lazy imports are not thread-safe
        app.state.settings = settings
        app.state.sessions = session_factory(connect(settings.database_url))
        app.state.dispatcher = make_dispatcher(app.state.sessions, settings)
        app.state.dispatcher.start()
        resumed = resume_generation(app.state)  # blind reviews a stopped server left half-answered
        yield
        for task in resumed:
            task.cancel()
        app.state.dispatcher.stop()
        if getattr(app.state, "engine", None) is not None:
            app.state.engine.stop()

    app = FastAPI(title="tunery", version=__version__, lifespan=lifespan)
    errors.install(app)
    app.add_middleware(
        BodyLimit, max_upload_bytes=settings.max_upload_bytes, max_request_bytes=settings.max_request_bytes
    )
    app.add_middleware(InferenceGate)  # outermost: a flood's refusals go before anything else runs
    for module in (health, files, jobs, models, datasets, runs, registry, keys, inference):
        app.include_router(module.router)
    app.include_router(files.report_router)
    app.include_router(model_exports.router)
    app.include_router(blind_reviews.router)
    web.mount(app)  # the web dashboard at /, over the same domain functions
    openapi.document(app)  # refusals, streams and links in the published schema
    return app


def make_dispatcher(sessions, settings: Settings):
    """Who runs jobs: the local worker in this process, or Celery workers through the broker."""
    if settings.broker_url:
        from tunery.jobs.celery_app import Redispatcher

        return Redispatcher(sessions, settings)
    from tunery.jobs.local import LocalWorker

    return LocalWorker(sessions, settings)
