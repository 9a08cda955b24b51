"""Per-row loss audit: every row of a run's data scored under the tuned model and its base, and flagged.

    audit = audit_run("runs/demo")                         # the run's own train and validation rows
    audit = audit_run("runs/demo", data="more.jsonl")      # or any file (or registered NAME@VERSION)
    audit.flagged()[0].line, audit.flagged()[0].flags      # worst first: 12, ['label_noise', 'not_learned']
    audit.folder                                           # runs/demo/audit/training/: rows.csv, rows.jsonl, ...
    drop_flagged(audit)                                    # a new dataset version without them (audit_files.py)

What a training loss curve hides: which rows the model never learned, which contradict the rest
of the data, which it learned suspiciously fast. Each row gets its mean loss per supervised token
under the tuned model and under the base (the same weights with the adapter switched off, so one
model in memory), the drop between them and how the tuned model's own tokens disagree with the
label; `audit_rules.py` turns those into flags. Scoring batches and packs rows as training does
(`audit_scores.py`): one forward pass per row per model, no gradients.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunery.data.fields import answer_text, prompt_text
from tunery.data.formats import load_examples
from tunery.data.prepare import load_split
from tunery.data.registry import resolve_data_path
from tunery.data.tokenize import Encoded, encode_examples
from tunery.data.types import Example
from tunery.errors import TuneryError
from tunery.evaluate.audit_rules import (
    AuditRules,
    RowAudit,
    flag_disagreements,
    flag_exact_duplicates,
    flag_split,
)
from tunery.run import Run

DEFAULT_BATCH_TOKENS = 8192  # tokens per forward pass: no activations are kept, so larger than training's
SHOWN_CHARS = 1000  # of a prompt or answer in the tables
FLAGS = ("not_learned", "label_noise", "memorised")
Progress = Callable[[float, str], None]


class AuditError(TuneryError, ValueError):
    """The run or the data cannot be audited; the message says why and what to do."""

    code = "invalid_audit"


@dataclass
class Source:
    """One file of rows to audit: the run's train or validation set, or a file given with --data."""

    split: str
    path: str
    dataset: str | None  # the registered NAME@VERSION it came from, if any
    examples: list[Example]
    content_hash: str
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {line, reason}: rows not scored
    warnings: list[str] = field(default_factory=list)


@dataclass
class Audit:
    run: str
    rows: list[RowAudit]  # worst first
    summary: dict[str, Any]
    sources: list[Source] = field(default_factory=list, repr=False)
    folder: Path | None = None

    def flagged(self) -> list[RowAudit]:
        return [row for row in self.rows if row.flags]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "rows": [asdict(row) for row in self.rows]}


def audit_run(
    run_path: str | Path, data: str | None = None, out: str | Path | None = None,
    batch_tokens: int | None = None, rules: AuditRules | None = None, progress: Progress | None = None,
    drop: bool = False, dataset_name: str | None = None,
) -> Audit:  # fmt: skip
    """Score, flag and write the audit of a finished run (default folder `<run>/audit/<data stem>`).

    `drop`: also register a dataset version without the flagged rows (`audit_files.drop_flagged`),
    named `dataset_name` when the rows come from a plain file (default: its stem).
    """
    from tunery.evaluate.audit_files import check_droppable, drop_flagged, write_audit

    report = progress or (lambda fraction, message: None)
    run, rules = Run.open(run_path), rules or AuditRules()
    check_auditable(run)
    sources = read_sources(run, data)
    if drop:
        check_droppable(sources)
    report(0.05, "loading the model")
    from tunery.inference import load_run_model

    model, tokenizer = load_run_model(run.path)
    config = run.config
    examples, encoded, owners = encode_sources(
        sources, tokenizer, config.data.max_length, config.data.train_on
    )
    if not encoded:
        skipped = "; ".join(
            f"line {s['line']}: {s['reason']}" for source in sources for s in source.skipped[:3]
        )
        raise AuditError(f"{_names(sources)}: no row has an answer token to score ({skipped or 'no rows'})")
    tuned, base, timing = score_both(model, encoded, config.batching, tokenizer, batch_tokens, report)
    rows = [
        row_audit(source, example, t, b, tokenizer)
        for source, example, t, b in zip(owners, examples, tuned, base, strict=True)
    ]
    cuts = {split: flag_split([r for r in rows if r.split == split], rules) for split in _splits(rows)}
    repeats = flag_exact_duplicates(rows, examples)
    disagreements = flag_disagreements(rows, examples, rules.near_duplicate)
    rows.sort(key=lambda r: (len(r.flags), r.loss_z), reverse=True)
    summary = audit_summary(run, sources, rows, rules, cuts, timing)
    summary["checks"] = {"exact_repeats": repeats, "near_duplicate_disagreements": disagreements}
    audit = Audit(str(run.path), rows, summary, sources)
    report(0.95, "writing the tables")
    audit.folder = write_audit(audit, Path(out) if out else run.path / "audit" / _default_name(data))
    if drop:
        summary["new_versions"] = drop_flagged(audit, dataset_name)
        write_audit(audit, audit.folder)
    return audit


def check_auditable(run: Run) -> None:
    """Refuse, before loading anything, what the audit cannot score."""
    config = run.config
    if config.task != "sft":
        raise AuditError(
            f"{run.path}: task={config.task}; the audit scores causal-LM rows (task=sft) by their token losses"
        )
    adapter = run.adapter_dir
    if not adapter.is_dir() or not any(adapter.iterdir()):
        status = run.record["status"]
        raise AuditError(f"{run.path} has no trained adapter (status: {status}); audit a finished run")


def read_sources(run: Run, data: str | None) -> list[Source]:
    """The rows to audit: `data` (a file or NAME@VERSION, bad rows skipped), else the run's own sets."""
    config = run.config
    if data is not None:
        path, dataset = resolve_data_path(data)
        loaded = load_examples(path, format=config.data.format)
        if loaded.format == "classification":
            raise AuditError(f"{path}: classification rows (text, label); the audit scores chat, "
                             "instruction, completion or text rows")  # fmt: skip
        skipped = [{"line": e.line, "reason": str(e)} for e in loaded.errors]
        return [Source("data", path, dataset, loaded.examples, loaded.content_hash, skipped)]
    train, valid, found = load_split(config.data, config.train.seed)
    trained = run.record["data"].get("sources", {})
    sources = []
    for split, examples in (("train", train), ("validation", valid)):
        where = found.get(split) or found["train"]  # a validation_split is held out of the train file
        if examples:
            sources.append(
                Source(split, where["path"], where.get("dataset"), examples, where["content_hash"])
            )
        before = trained.get(split, {}).get("content_hash")
        if examples and before and before != where["content_hash"]:
            sources[-1].warnings.append("the file changed since training: these are not the rows the run saw")
    return sources


def encode_sources(
    sources: list[Source], tokenizer, max_length: int, train_on: str
) -> tuple[list[Example], list[Encoded], list[Source]]:
    """Tokenise as training did; rows truncation left without an answer token are skipped."""
    examples, encoded, owners = [], [], []
    for source in sources:
        done = encode_examples(source.examples, tokenizer, max_length, train_on)
        by_line = {e.line: e for e in source.examples}
        for item in done.examples:
            examples.append(by_line[item.line])
            encoded.append(item)
            owners.append(source)
        for line in done.dropped_lines:
            reason = f"no answer token left after truncation to data.max_length={max_length}"
            source.skipped.append({"line": line, "reason": reason})
    return examples, encoded, owners


def score_both(model, encoded: list[Encoded], strategy: str, tokenizer, batch_tokens, report: Progress):
    """(tuned stats, base stats, timing): the base is the same model with its adapter switched off."""
    from tunery.evaluate.audit_scores import score_examples
    from tunery.nn.loss import causal_lm_parts

    parts, pad_id = causal_lm_parts(model), tokenizer.pad_token_id
    tokens = batch_tokens or DEFAULT_BATCH_TOKENS
    started = time.perf_counter()
    report(0.1, f"scoring {len(encoded)} rows under the tuned model")
    tuned = score_examples(model, parts, encoded, strategy, pad_id, tokens)
    report(0.5, f"scoring {len(encoded)} rows under the base model")
    with model.disable_adapter():
        base = score_examples(model, parts, encoded, strategy, pad_id, tokens)
    seconds = time.perf_counter() - started
    timing = {
        "seconds": round(seconds, 3), "rows_per_s": round(len(encoded) / seconds, 2),
        "tokens_per_s": round(2 * sum(len(e.input_ids) for e in encoded) / seconds, 1),
        "strategy": strategy, "batch_tokens": tokens, "forward_passes_per_row": 2,
    }  # fmt: skip
    return tuned, base, timing


def row_audit(source: Source, example: Example, tuned, base, tokenizer) -> RowAudit:
    return RowAudit(
        split=source.split, source=source.path, line=example.line, tokens=tuned.tokens,
        tuned_loss=round(tuned.loss, 6), base_loss=round(base.loss, 6),
        loss_drop=round(base.loss - tuned.loss, 6), label_prob=round(tuned.label_prob, 4),
        top_prob=round(tuned.top_prob, 4), agreement=round(tuned.agreement, 4),
        contradiction=round(tuned.contradiction, 4), prompt=_shown(prompt_text(example)),
        answer=_shown(answer_text(example)),
        predicted=_shown(tokenizer.decode(tuned.predicted, skip_special_tokens=True)),
    )  # fmt: skip


def audit_summary(run: Run, sources: list[Source], rows: list[RowAudit], rules: AuditRules, cuts, timing):
    flagged = [row for row in rows if row.flags]
    return {
        "object": "run.audit", "run": str(run.path), "rows": len(rows), "flagged": len(flagged),
        "flags": {name: sum(name in row.flags for row in rows) for name in FLAGS},
        "data": [
            {"split": s.split, "path": s.path, "dataset": s.dataset, "content_hash": s.content_hash,
             "rows": sum(r.split == s.split for r in rows), "skipped": s.skipped, "warnings": s.warnings}
            for s in sources
        ],
        "cuts": cuts, "rules": asdict(rules), "timing": timing,
    }  # fmt: skip


def _splits(rows: list[RowAudit]) -> list[str]:
    return list(dict.fromkeys(row.split for row in rows))


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _names(sources: list[Source]) -> str:
    return ", ".join(dict.fromkeys(s.path for s in sources)) or "the data"


def _default_name(data: str | None) -> str:
    if data is None:
        return "training"
    name = Path(data).stem if Path(data).exists() else data.replace("@", "-v")
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name) or "data"


__all__ = ["Audit", "AuditError", "AuditRules", "RowAudit", "audit_run"]
