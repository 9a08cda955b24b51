"""The web dashboard served by `tunery serve` at `/`: datasets, jobs, models, compare, playground.

    from tunery.web import mount
    mount(app)          # pages at /, the dashboard's own requests at /ui, files at /static

Server-rendered Jinja2 pages with a little plain JavaScript (fetch and EventSource) and uPlot
for the charts, vendored under static/vendor with its licence: nothing is fetched from
anywhere but this server (docs/dashboard.md). Pages and actions call the service's domain
functions (`tunery.service.domain`), as the REST API's routes do, so what the dashboard shows
and refuses is what the API does.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    from tunery.web import actions, pages
    from tunery.web import reviews as blind_reviews
    from tunery.web.auth import SignInRequired, sign_in_url

    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(blind_reviews.pages)
    app.include_router(blind_reviews.actions)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, err: SignInRequired) -> RedirectResponse:
        return RedirectResponse(sign_in_url(err.next_path), status_code=303)
