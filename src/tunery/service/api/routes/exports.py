"""`/api/models/{id}/export`: a registered model as a GGUF file, exported in the background."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from tunery.service.api.deps import CurrentProject, SessionDep, SettingsDep
from tunery.service.api.routes.files import BYTES
from tunery.service.domain import exports
from tunery.service.schemas.exports import ExportRequest, ExportStatus

router = APIRouter(prefix="/api/models", tags=["models"])


@router.post("/{model_id:path}/export", response_model=ExportStatus, status_code=202)
def start_export(
    model_id: str, request: ExportRequest, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> ExportStatus:
    """Start exporting the model (merged with its adapter); poll the export for its progress."""
    status = exports.start_export(session, project, settings, model_id, request.format, request.quant)
    return ExportStatus(**status)


@router.get("/{model_id:path}/exports/{export_id}", response_model=ExportStatus)
def get_export(
    model_id: str, export_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> ExportStatus:
    return ExportStatus(**exports.read_export(session, project, settings, model_id, export_id))


@router.get("/{model_id:path}/exports/{export_id}/file", response_class=FileResponse, responses={200: BYTES})
def download_export(
    model_id: str, export_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> FileResponse:
    """The finished .gguf file (409 while the export runs)."""
    path = exports.export_file(session, project, settings, model_id, export_id)
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)
