"""A run directory: what a fine-tune leaves behind, with a fixed, tested file set.

    runs/<name>/
      config.yaml      the resolved config (every default filled in)
      run.json         status, config, dataset hashes, package versions, metrics
      metrics.jsonl    one line per logged step and evaluation
      train.log        the log
      adapter/         trained weights (safetensors) + their config + the tokenizer
      checkpoints/     step-NNNNNN/ folders while training (see train/checkpoint.py)

Records are written to a temporary file and renamed, so a reader never sees half
of one. Older run.json files load with missing keys filled from `RECORD_DEFAULTS`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunery.config import TuneryConfig, load_config
from tunery.files import drop_torn_line, write_atomic

RECORD_DEFAULTS: dict[str, Any] = {
    "status": "unknown",
    "metrics": {},
    "data": {},
    "versions": {},
    "error": None,
    "warnings": [],  # {step, kind, message}: things a person should look at, e.g. overfitting
}
RUN_FILES = (
    "config.yaml",
    "run.json",
    "metrics.jsonl",
    "train.log",
    "adapter/tokenizer.json",
    "adapter/tokenizer_config.json",
)


@dataclass
class Run:
    path: Path
    _appending: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def create(cls, config: TuneryConfig) -> Run:
        name = (
            config.run_name
            or f"{Path(config.model.name).stem}-{config.method}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        path = Path(config.output_dir) / name
        if (path / "run.json").exists():
            raise FileExistsError(
                f"run {path} already exists; pick another run_name or resume it with --resume {path}"
            )
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        write_atomic(path / "config.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False))
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not (path / "config.yaml").exists():
            raise FileNotFoundError(f"{path} is not a tunery run (no config.yaml)")
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def config(self) -> TuneryConfig:
        return load_config(self.path / "config.yaml")

    @property
    def record(self) -> dict:
        file = self.path / "run.json"
        stored = json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}
        return {**RECORD_DEFAULTS, **stored}

    @property
    def metrics(self) -> dict:
        return self.record["metrics"]

    def update_record(self, **fields: Any) -> dict:
        record = {**self.record, **fields}
        write_atomic(self.path / "run.json", json.dumps(record, indent=2, default=str))
        return record

    def pin_datasets(self, sources: dict) -> None:
        """Write the exact dataset versions trained on into config.yaml, so re-running it uses the same rows."""
        file = self.path / "config.yaml"
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
        pinned = {role: source["dataset"] for role, source in sources.items() if source.get("dataset")}
        if all(config["data"].get(role) == dataset for role, dataset in pinned.items()):
            return
        config["data"].update(pinned)
        write_atomic(file, yaml.safe_dump(config, sort_keys=False))

    def log_metrics(self, **values: Any) -> None:
        file = self.path / "metrics.jsonl"
        if not self._appending:  # once per process: whoever wrote before may have been killed mid-line
            drop_torn_line(file)
            self._appending = True
        with file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(values) + "\n")

    def history(self) -> list[dict]:
        file = self.path / "metrics.jsonl"
        if not file.exists():
            return []
        text = file.read_text(encoding="utf-8", errors="replace")
        complete = text[: text.rfind("\n") + 1]  # a line still being written (or torn) waits
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.record['status']!r})"
