"""What an audit leaves behind, and the dataset version without its flagged rows.

    <run>/audit/<name>/
      summary.json   rows, flag counts, the cuts used, skipped lines, rows/s
      rows.csv       one line per row, worst first (spreadsheet-safe: formulas are quoted)
      rows.jsonl     the same as JSON, with the reasons as a list
      audit.html     one self-contained page, worst rows first (autoescaped: rows are shown as text)

    versions = drop_flagged(audit)   # orders@3 made of orders@2 without its flagged lines, with lineage

A dropped-rows version is registered in the CLI's dataset registry (`data/registry.py`) as the next
version of the dataset the rows came from; a plain file is first registered as it is (under its
stem, or `name`), so the new version always has a parent. Its recipe records the audit: the run,
the version it was made from, and every dropped line with its flags.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.data.fields import write_jsonl
from tunery.data.load import read_rows
from tunery.files import write_atomic

if TYPE_CHECKING:
    from tunery.data.registry import DatasetStore, DatasetVersion
    from tunery.evaluate.audit import Audit, Source

AUDIT_FILES = ("summary.json", "rows.csv", "rows.jsonl", "audit.html")
CSV_COLUMNS = (
    "rank", "split", "source", "line", "flags", "tuned_loss", "base_loss", "loss_drop", "tokens",
    "label_prob", "top_prob", "agreement", "contradiction", "loss_z", "prompt", "answer", "predicted", "reasons",
)  # fmt: skip
HTML_UNFLAGGED_ROWS = 50  # the page lists every flagged row and this many of the rest
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def write_audit(audit: Audit, folder: Path) -> Path:
    """Write the four files of an audit into `folder`; returns it."""
    write_atomic(folder / "summary.json", json.dumps(audit.summary, indent=2, default=str))
    write_atomic(
        folder / "rows.jsonl", "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in audit.rows)
    )
    write_atomic(folder / "rows.csv", rows_csv(audit))
    write_atomic(folder / "audit.html", render_html(audit))
    return folder


def rows_csv(audit: Audit) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for rank, row in enumerate(audit.rows, start=1):
        values = {
            **asdict(row),
            "rank": rank,
            "flags": ";".join(row.flags),
            "reasons": " | ".join(row.reasons),
        }
        writer.writerow([csv_cell(values[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading quote (OWASP's CSV injection advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def render_html(audit: Audit) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("tunery.evaluate", ""), autoescape=select_autoescape(["j2", "html"])
    )
    flagged = audit.flagged()
    shown = flagged + [row for row in audit.rows if not row.flags][:HTML_UNFLAGGED_ROWS]
    template = environment.get_template("audit.html.j2")
    return template.render(summary=audit.summary, rows=shown, flagged=len(flagged), total=len(audit.rows))


# --- the dataset without its flagged rows ---------------------------------------------------------
def check_droppable(sources: list[Source]) -> None:
    """Before scoring: a version is only made of files whose every row loads (the registry's rule)."""
    from tunery.evaluate.audit import AuditError

    for source in sources:
        bad = [skip["line"] for skip in source.skipped]
        if bad:
            shown = ", ".join(map(str, bad[:10]))
            raise AuditError(
                f"{source.path}: lines {shown} cannot be read as rows, so no dataset version can be made of "
                f"it; fix them (see `tunery data check {source.path}`) or audit without --drop-flagged"
            )


def drop_flagged(audit: Audit, name: str | None = None, store: DatasetStore | None = None) -> list[dict]:
    """A new dataset version of each audited file that has flagged rows, without them; returns them."""
    from tunery.data.registry import DatasetStore
    from tunery.evaluate.audit import AuditError

    store = store or DatasetStore()
    made = []
    for path, lines in flagged_lines(audit).items():
        source = next(source for source in audit.sources if source.path == path)
        parent = registered_parent(store, source, name)
        kept = [record for line, record in read_rows(path) if line not in lines]
        if not kept:
            raise AuditError(f"{path}: every row is flagged; no dataset version is left to write")
        assert audit.folder is not None, "write_audit runs first"
        file = write_jsonl(kept, audit.folder / f"{parent.name}-v{parent.version}-audited.jsonl")
        dropped = [{"line": line, "flags": flags} for line, flags in lines.items()]
        recipe = {"audit": {"run": audit.run, "from": parent.spec, "dropped": dropped}}
        added = store.add(
            parent.name, file, recipe=recipe, source=f"audit of {audit.run}", derived_from=parent.version
        )
        made.append({"dataset": added.version.spec, "parent": parent.spec, "rows": added.version.rows,
                     "dropped_lines": list(lines), "file": str(file)})  # fmt: skip
    return made


def flagged_lines(audit: Audit) -> dict[str, dict[int, list[str]]]:
    """Flagged lines of each audited file, with their flags (both splits of a file a validation_split was cut from)."""
    found: dict[str, dict[int, list[str]]] = {}
    for row in audit.flagged():
        found.setdefault(row.source, {})[row.line] = row.flags
    return {path: dict(sorted(lines.items())) for path, lines in found.items()}


def registered_parent(store: DatasetStore, source: Source, name: str | None) -> DatasetVersion:
    """The version the rows came from; a plain file is registered first (as its stem, or `name`)."""
    from tunery.data.registry import parse_spec

    if source.dataset:
        parsed = parse_spec(source.dataset)
        assert parsed is not None, "a resolved dataset spec always parses"
        return store.get(*parsed)
    return store.add(name or dataset_name(source.path), source.path).version


def dataset_name(path: str) -> str:
    """A registry name from a file name: `my train.jsonl` -> `my-train`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-._")[:100] or "dataset"
