"""Named, versioned data sets of a project, kept in the `dataset_versions` table.

Every upload becomes a version of the dataset named after its file (`orders.jsonl` ->
`orders`); a new version only when the content changed. A version's numbers come from
`tunery.data.versions.version_record`, as in the CLI's JSON registry.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tunery.data.registry import NAME_PATTERN
from tunery.data.versions import version_record
from tunery.errors import TuneryError, error_code
from tunery.jobs.lifecycle import without_server_paths
from tunery.service.domain.lookups import get_file
from tunery.service.domain.references import base_model
from tunery.service.errors import ApiError, not_found
from tunery.store.tables import DatasetVersionRow, File

if TYPE_CHECKING:
    from tunery.data.preview import Preview
    from tunery.settings import Settings


@dataclass(frozen=True)
class Dataset:
    name: str
    latest: DatasetVersionRow
    versions: int


MAX_NAME = 100  # a dataset name is a table cell and a URL part


def check_name(name: str) -> str:
    """A dataset name sent by a caller: short and plain, as the names uploads get are."""
    if len(name) > MAX_NAME or not NAME_PATTERN.match(name):
        raise ApiError(
            400, f"a dataset name takes 1 to {MAX_NAME} letters, digits, '.', '_' and '-' "
            f"(got {len(name)} characters)", code="invalid_dataset_name", param="name",
        )  # fmt: skip
    return name


def dataset_name(filename: str) -> str:
    """The dataset an uploaded file becomes a version of: its name without the suffix, made safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(filename).stem)[:MAX_NAME].strip("-._") or "dataset"


def _newest_first(project: str, name: str) -> Select[DatasetVersionRow]:
    return (
        select(DatasetVersionRow)
        .where(DatasetVersionRow.project == project, DatasetVersionRow.name == name)
        .order_by(DatasetVersionRow.version.desc())
    )


def _latest(session: Session, project: str, name: str) -> DatasetVersionRow | None:
    return session.scalar(_newest_first(project, name))


def add_version(session: Session, project: str, name: str, file: File) -> DatasetVersionRow:
    """The next version of dataset `name` made of `file`, or the latest one if its content is the same."""
    latest = _latest(session, project, check_name(name))
    if latest is not None and latest.content_hash == file.content_hash:
        if latest.file_id is None:
            latest.file_id = file.id
        return latest
    record = version_record(file.report, latest)
    version = DatasetVersionRow(
        project=project, name=name, file_id=file.id, report=file.report, version=record.version,
        parent=record.parent, content_hash=record.content_hash, rows=record.rows, format=record.format,
    )  # fmt: skip
    session.add(version)
    return version


def register_file(session: Session, project: str, name: str, file_id: str) -> DatasetVersionRow:
    """Register an uploaded file as the next version of `name` (any name, not only its own)."""
    version = add_version(session, project, check_name(name), get_file(session, project, file_id))
    session.commit()
    return version


def list_datasets(session: Session, project: str) -> list[Dataset]:
    counts = session.execute(
        select(DatasetVersionRow.name, func.count())
        .where(DatasetVersionRow.project == project)
        .group_by(DatasetVersionRow.name)
        .order_by(DatasetVersionRow.name)
    ).all()
    # Each name was just counted, so it has a latest version.
    return [
        Dataset(name, session.scalars(_newest_first(project, name).limit(1)).one(), n) for name, n in counts
    ]


def list_versions(session: Session, project: str, name: str) -> list[DatasetVersionRow]:
    """Oldest first; 404 for a name the project has no version of."""
    query = select(DatasetVersionRow).where(
        DatasetVersionRow.project == project, DatasetVersionRow.name == name
    )
    versions = list(session.scalars(query.order_by(DatasetVersionRow.version)).all())
    if not versions:
        raise not_found("dataset", name)
    return versions


def get_version(session: Session, project: str, name: str, version: int) -> DatasetVersionRow:
    found = session.scalar(
        select(DatasetVersionRow).where(
            DatasetVersionRow.project == project,
            DatasetVersionRow.name == name,
            DatasetVersionRow.version == version,
        )
    )
    if found is None:
        raise not_found("dataset version", f"{name}@{version}")
    return found


def version_of_upload(session: Session, project: str, file: File) -> DatasetVersionRow:
    """The version an upload became: of the dataset named after it, with its content."""
    versions = list_versions(session, project, dataset_name(file.filename))
    return next(v for v in versions if v.content_hash == file.content_hash)


def file_of_version(session: Session, project: str, version: DatasetVersionRow) -> File:
    """The uploaded file a version was made of; 404 once that file is deleted."""
    stored = session.scalar(select(File).where(File.id == version.file_id, File.project == project))
    if stored is None:
        raise ApiError(
            404,
            f"the file of {version.name} version {version.version} was deleted",
            code="file_not_found",
        )
    return stored


PREVIEW_ROWS_MAX = 50  # rows one preview request may render
_TOKENIZER_LOCK = threading.Lock()


def preview_version(
    session: Session,
    project: str,
    settings: Settings,
    name: str,
    model: str,
    rows: int,
    version: int | None = None,
    max_length: int | None = None,
) -> tuple[int, Preview]:
    """The version previewed (default: the latest) and its mask preview under `model`'s tokenizer and template.

    The rows go through training's own data path (`tunery.data.preview`), with a job's defaults
    for everything the request does not set; errors name `name@version`, never a server path.
    """
    from tunery.data.preview import build_preview, preview_config

    shown = get_version(session, project, name, version) if version else _latest(session, project, name)
    if shown is None:
        raise not_found("dataset", name)
    path = str(settings.artifacts / file_of_version(session, project, shown).path)
    base = base_model(session, project, settings, model)
    tokenizer = chat_tokenizer(base)
    overrides = [f"data.max_length={max_length}"] if max_length else []
    try:
        cfg = preview_config(data=path, model=base, overrides=overrides)
        return shown.version, build_preview(cfg, rows, tokenizer)
    except TuneryError as err:
        message = str(err).replace(path, f"{name}@{shown.version}")
        raise ApiError(400, message, code=error_code(err)) from None


def token_lengths(
    session: Session, project: str, settings: Settings, name: str, version: int, model: str, max_length: int
) -> list[int]:
    """Each row's token count under `model`'s tokenizer and chat template (the dashboard's histogram)."""
    from tunery.data import load_examples
    from tunery.data.tokenize import token_counter

    stored = file_of_version(session, project, get_version(session, project, name, version))
    base = base_model(session, project, settings, model)
    count = token_counter(chat_tokenizer(base), max_length=max_length)
    return [count(example).total for example in load_examples(settings.artifacts / stored.path).examples]


def chat_tokenizer(model: str):
    """The model's tokenizer with a chat template, loaded once per model and shared by every request
    (they read it, never change it); a 400 naming `model` when it cannot be loaded."""
    from tunery.models import ModelNotFoundError

    try:
        with _TOKENIZER_LOCK:  # one load at a time: two first imports of transformers in two threads race
            return _cached_tokenizer(model)
    except (ModelNotFoundError, OSError, ValueError) as err:
        message = f"cannot load the tokenizer of '{model}': {str(err).splitlines()[0]}"
        raise ApiError(400, without_server_paths(message), code="model_not_found", param="model") from None


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(model: str):
    from tunery.data.tokenize import ensure_chat_template
    from tunery.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(model))
    ensure_chat_template(tokenizer)
    return tokenizer
