"""What a dataset version is, computed one way for both registries that keep versions.

    report = check_data(load_examples("orders.jsonl")).to_dict()
    record = version_record(report, latest)     # latest: the newest version so far, or None
    record.version, record.parent, record.content_hash, record.rows, record.stats

The CLI's JSON registry (`tunery.data.registry`, `tunery data add`) and the service's
SQL table (`dataset_versions`, filled by `tunery.service.domain.datasets`) both build a
version from this record, so the same file gets the same hash, row count and stats in
either. The record is made from the data check's report of the loaded rows, which the
service keeps with every upload: registering an uploaded file under a second name needs
no second read of it. Whether a new version is due (the content changed) is the caller's
rule, since the JSON registry also versions a changed mix recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Versioned(Protocol):
    """Either registry's version: all this module needs of the latest one (read-only, so frozen dataclasses fit)."""

    @property
    def version(self) -> int: ...

    @property
    def content_hash(self) -> str: ...


@dataclass(frozen=True)
class VersionRecord:
    version: int
    parent: int | None  # the version this one follows; None for the first
    content_hash: str  # sha256 of the file's bytes
    rows: int  # valid rows: what trains
    format: str
    stats: dict[str, Any]  # `version_stats` of the data check


def version_stats(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a data check worth keeping with a version (counts, not the rows themselves)."""
    return {
        "rows_read": report["rows"],
        "valid_rows": report["valid_rows"],
        "warnings": len(report["warnings"]),
        "exact_duplicates": sum(len(group) - 1 for group in report["exact_duplicates"]),
        "near_duplicates": sum(len(group) - 1 for group in report["near_duplicates"]),
        "label_counts": report.get("label_counts"),
    }


def version_record(report: dict[str, Any], latest: Versioned | None) -> VersionRecord:
    """The version after `latest` (None: the first) of the rows `report` checked (`DataReport.to_dict()`)."""
    return VersionRecord(
        version=latest.version + 1 if latest else 1,
        parent=latest.version if latest else None,
        content_hash=report["content_hash"],
        rows=report["valid_rows"],
        format=report["format"],
        stats=version_stats(report),
    )
