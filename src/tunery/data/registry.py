"""Named, versioned data sets: register a file, get it back byte for byte later.

    store = DatasetStore()                              # $TUNERY_HOME/datasets
    added = store.add("orders", "data/train.jsonl")     # version 1; then 2, 3, ... on each change
    added.version.version, added.diff.summary()         # 2, "12 added, 3 removed, 1 changed, 300 unchanged"
    store.file_of(store.get("orders", 1))               # the registered copy of version 1
    resolve_data_path("orders@1")                       # (that path, "orders@1"), as config data.train does

Every version is a copy of the file, named by its sha256 (`files/<sha256><suffix>`),
so a version still trains on the same rows after the user's file has changed or gone.
Adding a file whose content equals the latest version makes no new version. A
version holds its content hash, parent version, time, row count, format, the path
it came from, what changed against its parent and, for a mixed set, its recipe.
Only files whose every row is valid are registered: a version is something you can
train on.

The index is one JSON file written atomically; nothing outside this module reads it.
What a version holds (hash, parent, rows, format, stats) is computed by
`tunery.data.versions.version_record`, the same function the service's SQL registry
uses, so this module only keeps the file copies and the index.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tunery.data.diff import RowDiff, diff_examples
from tunery.data.types import DataFileError, LoadedData
from tunery.data.versions import version_record

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SPEC_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(@v?(?P<version>\d+))?$")


class DatasetNotFoundError(DataFileError):
    """The name or version is not registered; the message lists what is."""

    code = "dataset_not_found"


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    content_hash: str
    parent: int | None
    created: str  # ISO 8601, UTC
    rows: int
    format: str
    source: str  # the path it was added from
    file: str  # the stored copy, relative to the store root
    changes: dict[str, int] | None = None  # added/removed/changed/unchanged against `parent`
    recipe: dict[str, Any] | None = None  # how a mixed set was made
    stats: dict[str, Any] | None = None  # `tunery.data.versions.version_stats`; None in older indexes

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Added:
    version: DatasetVersion
    diff: RowDiff | None  # against the previous version; None for the first
    is_new: bool  # False when the content equals the latest version


@dataclass
class DatasetStore:
    root: Path = field(default_factory=lambda: default_root())

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # --- reading --------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._index())

    def versions(self, name: str) -> list[DatasetVersion]:
        return [DatasetVersion(**entry) for entry in self._index().get(name, [])]

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        """A version of `name`; the latest when `version` is None."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none yet; add one with `tunery data add NAME FILE`"
            raise DatasetNotFoundError(name, "no such registered dataset", hint=f"registered: {known}")
        if version is None:
            return versions[-1]
        for entry in versions:
            if entry.version == version:
                return entry
        raise DatasetNotFoundError(
            f"{name}@{version}",
            "no such version",
            hint=f"versions: {', '.join(str(v.version) for v in versions)}",
        )

    def file_of(self, version: DatasetVersion) -> Path:
        return self.root / version.file

    def load(self, version: DatasetVersion) -> LoadedData:
        from tunery.data.formats import load_examples

        return load_examples(self.file_of(version), format=version.format)

    def diff(self, name: str, old: int, new: int) -> RowDiff:
        return diff_examples(self.load(self.get(name, old)).examples, self.load(self.get(name, new)).examples)

    # --- writing --------------------------------------------------------------------------
    def add(
        self, name: str, path: str | Path, recipe: dict[str, Any] | None = None, source: str | None = None,
        derived_from: int | None = None,
    ) -> Added:  # fmt: skip
        """Register `path` as the next version of `name`; refuses files with row errors.

        `source` is what to record as the origin when `path` is a temporary file (a mix).
        `derived_from` is the version it was made from when that is not the latest (an audit of
        `orders@1` after `orders@2` was added): it becomes the parent, and the diff is against it.
        """
        from tunery.data.check import check_data
        from tunery.data.formats import load_checked

        if not NAME_PATTERN.match(name):
            raise DataFileError(name, "not a valid dataset name", hint="letters, digits, '.', '_' and '-'")
        loaded = load_checked(str(path))
        previous = self.versions(name)[-1] if self.versions(name) else None
        if previous and previous.content_hash == loaded.content_hash and previous.recipe == recipe:
            return Added(previous, RowDiff(0, 0, 0, previous.rows), is_new=False)
        parent = self.get(name, derived_from) if derived_from is not None else previous
        diff = diff_examples(self.load(parent).examples, loaded.examples) if parent else None
        record = version_record(check_data(loaded).to_dict(), previous)
        if parent is not None:
            record = replace(record, parent=parent.version)
        version = DatasetVersion(
            name=name,
            **asdict(record),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            source=source or str(Path(path).resolve()),
            file=self._store_copy(Path(path), loaded.content_hash),
            changes=diff.counts() if diff else None,
            recipe=recipe,
        )
        index = self._index()
        index.setdefault(name, []).append(asdict(version))
        self._write_index(index)
        return Added(version, diff, is_new=True)

    def _store_copy(self, path: Path, content_hash: str) -> str:
        relative = f"files/{content_hash}{path.suffix.lower()}"
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted copy
            partial.unlink(missing_ok=True)
            if path.is_dir():
                shutil.copytree(path, partial)
            else:
                shutil.copyfile(path, partial)
            partial.rename(target)
        return relative

    def _index(self) -> dict[str, list[dict]]:
        file = self.root / "index.json"
        if not file.exists():
            return {}
        return json.loads(file.read_text(encoding="utf-8"))["datasets"]

    def _write_index(self, index: dict[str, list[dict]]) -> None:
        from tunery.files import write_atomic

        write_atomic(self.root / "index.json", json.dumps({"datasets": index}, indent=2))


def default_root() -> Path:
    from tunery.models import tunery_home

    return tunery_home() / "datasets"


def parse_spec(spec: str) -> tuple[str, int | None] | None:
    """`"orders@2"` -> `("orders", 2)`, `"orders"` -> `("orders", None)`; None when it is not a name."""
    match = SPEC_PATTERN.match(spec)
    if not match:
        return None
    version = match.group("version")
    return match.group("name"), int(version) if version else None


def resolve_data_path(spec: str, store: DatasetStore | None = None) -> tuple[str, str | None]:
    """A data path, or a registered `NAME[@VERSION]` turned into its stored file: `(path, "name@version" or None)`.

    An existing path always wins, so a file called `orders` is read as a file.
    """
    if Path(spec).exists():
        return spec, None
    parsed = parse_spec(spec)
    store = store or DatasetStore()
    if parsed is None or (parsed[1] is None and not store.versions(parsed[0])):
        return spec, None  # not a name we know: the loader reports the missing file
    version = store.get(*parsed)
    return str(store.file_of(version)), version.spec
