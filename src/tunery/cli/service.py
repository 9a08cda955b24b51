"""`tunery serve`, `tunery worker`, `tunery keys create|list|revoke`: the platform service.

    tunery serve --port 8000                      # SQLite + local worker under $TUNERY_HOME/service
    tunery keys create --project team-a           # prints a key once; it is stored hashed
    tunery keys list [--project team-a]           # ids, prefixes, projects; never the secrets
    tunery keys revoke key-…                      # refused at once by the API and the dashboard
    TUNERY_BROKER_URL=redis://127.0.0.1:6379/0 tunery worker --queues gpu --gpus 2 --slots 2

Settings come from TUNERY_* variables or the YAML file in TUNERY_SERVICE_CONFIG (docs/service.md).
"""

from __future__ import annotations

from typing import Annotated

import typer

from tunery.libraries import require_extra

keys = typer.Typer(help="API keys of the service.", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    inference_only: Annotated[bool, typer.Option(help="Only the /v1 completion routes.")] = False,
    model: Annotated[str | None, typer.Option(help="Inference-only: the base model (alias or path).")] = None,
    adapter: Annotated[list[str] | None, typer.Option(help="NAME=RUN_DIR, repeatable.")] = None,
    max_adapters: Annotated[int, typer.Option(help="Adapters kept loaded per base model (LRU).")] = 8,
) -> None:
    """Start the fine-tuning API (OpenAI-compatible /v1 and native /api); jobs run in a local worker
    unless TUNERY_BROKER_URL points to Celery workers. With --inference-only, serve models without a database."""
    require_extra(
        "serve" if inference_only else "service",
        "tunery serve" + (" --inference-only" if inference_only else ""),
    )
    import uvicorn

    if inference_only:
        from tunery.service.inference_app import create_inference_app

        models = inference_models(model, adapter or [])
        typer.echo(f"tunery serve --inference-only: {', '.join(models)}", err=True)
        uvicorn.run(create_inference_app(models, max_adapters), host=host, port=port, log_level=log_level)
        return

    from tunery.app import create_app
    from tunery.settings import Settings

    settings = Settings()
    typer.echo(
        f"tunery serve: database {_safe(settings.database_url)}, artifacts {settings.artifacts}, "
        f"jobs run {'on Celery workers via ' + _safe(settings.broker_url) if settings.broker_url else 'locally'}",
        err=True,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def worker(
    name: Annotated[str | None, typer.Option(help="Worker name (Celery hostname), e.g. w1@%h.")] = None,
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated worker pools to serve (default: TUNERY_QUEUE).")
    ] = None,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs this worker hands to jobs (one process each).")] = 0,
    slots: Annotated[int, typer.Option(min=1, help="Jobs this worker runs at the same time.")] = 1,
) -> None:
    """Run jobs from the broker (TUNERY_BROKER_URL), at most --slots at a time, each in its own training
    process; jobs that ask for GPUs come only to workers with at least that many (docs/deploy.md)."""
    require_extra("service", "tunery worker")
    from tunery.jobs.celery_app import run_worker
    from tunery.settings import Settings

    settings = Settings()
    if not settings.broker_url:
        raise typer.BadParameter(
            "set TUNERY_BROKER_URL (redis://host:6379/0); without it `tunery serve` runs jobs"
        )
    pools = [queue.strip() for queue in (queues or settings.queue).split(",") if queue.strip()]
    run_worker(settings, name=name, loglevel=log_level, queues=pools, gpus=gpus, slots=slots)


@keys.command("create")
def create_key(
    project: Annotated[str, typer.Option(help="The project the key sees and creates objects in.")],
) -> None:
    """Create an API key for PROJECT and print it (only now: it is stored hashed)."""
    require_extra("service", "tunery keys")
    from tunery.service.keys import create_key as create
    from tunery.settings import Settings
    from tunery.store import connect, session_factory

    with session_factory(connect(Settings().database_url)).begin() as session:
        secret = create(session, project)
    typer.echo(secret)


@keys.command("list")
def list_keys(
    project: Annotated[str | None, typer.Option(help="Only this project's keys.")] = None,
) -> None:
    """List keys (id, project, first characters, created, revoked); the secrets are not stored."""
    require_extra("service", "tunery keys")
    import datetime

    from tunery.service.keys import list_keys as listed
    from tunery.settings import Settings
    from tunery.store import connect, session_factory

    with session_factory(connect(Settings().database_url))() as session:
        rows = listed(session, project)
        for key in rows:
            created = datetime.datetime.fromtimestamp(key.created_at, datetime.UTC).strftime("%Y-%m-%d %H:%M")
            state = "revoked" if key.revoked else "live"
            typer.echo(f"{key.id}  {key.project}  {key.prefix}…  {created}  {state}")
    if not rows:
        typer.echo("no keys" + (f" for project {project}" if project else ""), err=True)


@keys.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `tunery keys list` shows it.")],
) -> None:
    """Revoke a key: its API requests and its dashboard sessions are refused from now on."""
    require_extra("service", "tunery keys")
    from tunery.service.keys import revoke_key as revoke
    from tunery.settings import Settings
    from tunery.store import connect, session_factory

    with session_factory(connect(Settings().database_url)).begin() as session:
        key = revoke(session, key_id)
    if key is None:
        typer.echo(f"no key with id '{key_id}': see `tunery keys list`", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked {key_id} (project {key.project})")


def inference_models(model: str | None, adapters: list[str]) -> dict[str, tuple[str, str]]:
    """{name: ("base", model) or ("run", run dir)} from --model and --adapter NAME=RUN_DIR."""
    if model is None and not adapters:
        raise typer.BadParameter("--inference-only needs --model M and/or --adapter NAME=RUN_DIR")
    models = {model: ("base", model)} if model else {}
    for spec in adapters:
        name, sep, run_dir = spec.partition("=")
        if not sep or not name or not run_dir:
            raise typer.BadParameter(f"--adapter {spec}: expected NAME=RUN_DIR")
        models[name] = ("run", run_dir)
    return models


def _safe(url: str | None) -> str:
    """A URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True) if url and "://" in url else str(url)
