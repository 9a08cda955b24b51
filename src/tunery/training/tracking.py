"""Experiment trackers: TensorBoard, MLflow and Weights & Biases behind one small interface.

    train:
      report_to: [tensorboard, mlflow, wandb]

Each tracker gets what metrics.jsonl has (loss, lr, tokens/s, validation loss, final scores),
the resolved config as parameters, the dataset content hashes and versions as tags, and the
adapter as an artifact. A tracker that cannot start stops the run at set-up with one line
naming the tracker and the setting, before any weight loads; one that fails later is logged
as a warning once, recorded in run.json, and dropped, while training goes on. Only rank 0
logs. The libraries (the [tracking] extra) are imported only when a tracker is asked for.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from tunery.config import TuneryConfig
from tunery.errors import TuneryError
from tunery.libraries import MissingExtra
from tunery.run import Run
from tunery.urlpolicy import UrlPolicy

log = logging.getLogger("tunery.training")

ArtifactKind = Literal["model", "report"]


class TrackerUnavailable(TuneryError):
    """A tracker in train.report_to cannot start; the message names it and the setting to fix."""

    code = "tracker_unavailable"


class Tracker(Protocol):
    """What the recipe calls; a constructor checks what it can (library, server, key) before training."""

    name: str

    def start(self, run: Run, params: dict[str, str], tags: dict[str, str]) -> None: ...
    def log(self, step: int, metrics: dict[str, float]) -> None: ...
    def artifact(self, path: Path, kind: ArtifactKind) -> None: ...
    def finish(self, completed: bool) -> None: ...


# --- the fan-out the recipe holds -------------------------------------------------------------


class Trackers:
    """Every tracker of the run; after start, a tracker that raises is warned about once and dropped."""

    def __init__(self, trackers: list[Tracker] | None = None) -> None:
        self.trackers = list(trackers or [])
        self.run: Run | None = None
        self.step = 0

    def start(self, run: Run, cfg: TuneryConfig, sources: dict) -> None:
        self.run = run
        params, tags = config_params(cfg), dataset_tags(sources) | cfg.train.tracking_tags
        tags |= {"tunery.run": str(run.path.resolve()), "tunery.model": cfg.model.name}
        for tracker in self.trackers:
            try:
                tracker.start(run, params, tags)
            except TuneryError:
                raise
            except Exception as err:  # the library's own error: one line naming tracker and setting
                raise TrackerUnavailable(
                    f"{tracker.name}: could not start a run: {_first_line(err)}"
                ) from None
        if self.trackers:
            run.update_record(tracking={t.name: getattr(t, "where", {}) for t in self.trackers})

    def log(self, step: int, values: dict[str, Any]) -> None:
        """A metrics.jsonl row: its numbers (step and epoch aside) go to every tracker at `step`."""
        self.step = step
        metrics = {k: float(v) for k, v in values.items() if _is_number(v) and k != "step"}
        if metrics:
            self._each("log", step, metrics)

    def artifact(self, path: Path, kind: ArtifactKind) -> None:
        if path.exists():
            self._each("artifact", path, kind)

    def finish(self, completed: bool) -> None:
        self._each("finish", completed)
        self.trackers = []

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:
                self._drop(tracker, err)

    def _drop(self, tracker: Tracker, err: Exception) -> None:
        self.trackers.remove(tracker)
        message = f"{tracker.name} stopped answering ({_first_line(err)}); training goes on without it"
        log.warning("step %d: %s", self.step, message)
        if self.run is not None:
            entry = {"step": self.step, "kind": "tracker", "message": message}
            self.run.update_record(warnings=[*self.run.record["warnings"], entry])


def open_trackers(cfg: TuneryConfig, main: bool) -> Trackers:
    """The trackers of train.report_to, each checked now; none on ranks other than 0."""
    if not main or not cfg.train.report_to:
        return Trackers()
    for name in cfg.train.report_to:
        _require(name)
    builders: dict[str, Callable[[TuneryConfig], Tracker]] = {
        "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker,
    }  # fmt: skip
    return Trackers([builders[name](cfg) for name in cfg.train.report_to])


def _require(tracker: str) -> None:
    """One line naming the extra when the tracker's library is missing (each tracker needs only its own)."""
    from importlib.util import find_spec

    module = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}[tracker]
    if find_spec(module) is None:
        raise MissingExtra(
            f"train.report_to: {tracker} needs the [tracking] extra: pip install 'tunery[tracking]' "
            f"(missing: {module})"
        )


def config_params(cfg: TuneryConfig) -> dict[str, str]:
    """The resolved config as flat `section.key` -> text, as trackers store parameters."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = str(value)

    walk("", cfg.model_dump())
    return flat


def dataset_tags(sources: dict) -> dict[str, str]:
    """data.<role>.content_hash / .dataset (NAME@VERSION) / .rows / .path of each data set trained on."""
    tags = {}
    for role, source in sources.items():
        for key in ("content_hash", "dataset", "rows", "path", "format"):
            if source.get(key) is not None:
                tags[f"data.{role}.{key}"] = str(source[key])
    return tags


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


# --- TensorBoard ------------------------------------------------------------------------------


class TensorBoardTracker:
    """Event files in RUN/tensorboard (`tensorboard --logdir runs`); config and tags as text."""

    name = "tensorboard"

    def __init__(self, cfg: TuneryConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        self.writer: Any = None
        self.where: dict[str, str] = {}

    def start(self, run: Run, params: dict[str, str], tags: dict[str, str]) -> None:
        logdir = run.path / "tensorboard"
        self.writer = self._writer_class(log_dir=str(logdir))
        self.writer.add_text("config", "```\n" + yaml.safe_dump(params, sort_keys=True) + "```")
        self.writer.add_text("tags", "\n".join(f"- {k}: {v}" for k, v in sorted(tags.items())))
        self.where = {"logdir": str(logdir)}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def artifact(self, path: Path, kind: ArtifactKind) -> None:
        self.writer.add_text(f"artifact/{kind}", str(path.resolve()))

    def finish(self, completed: bool) -> None:
        self.writer.add_text("status", "completed" if completed else "failed")
        self.writer.close()


# --- MLflow -----------------------------------------------------------------------------------


class MlflowTracker:
    """A run in mlflow.experiment on mlflow.tracking_uri; with mlflow.register the adapter becomes a version."""

    name = "mlflow"

    def __init__(self, cfg: TuneryConfig) -> None:
        # One try and a short timeout: a dead server costs a warning, not minutes of retries per step.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow import MlflowClient

        self.options = cfg.mlflow
        self.uri, self.artifact_location = mlflow_store(cfg)
        if self.uri and self.uri.startswith(("http://", "https://")):
            check_server_answers(self.uri, follow_redirects=UrlPolicy.for_this_job() is None)
        setting = f"mlflow.tracking_uri={self.uri!r}" if cfg.mlflow.tracking_uri else "MLFLOW_TRACKING_URI"
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._experiment(cfg.mlflow.experiment)
        except Exception as err:
            raise TrackerUnavailable(f"mlflow: {setting} does not work: {_first_line(err)}") from None
        self.run_id = ""
        self.where: dict[str, str] = {}
        self.lineage: dict[str, str] = {}

    def _experiment(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment:
            return experiment.experiment_id
        return self.client.create_experiment(name, artifact_location=self.artifact_location)

    def start(self, run: Run, params: dict[str, str], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        mlflow_run = self.client.create_run(self.experiment_id, run_name=run.name, tags=tags)
        self.run_id = mlflow_run.info.run_id
        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.source.name", "tunery")])
        self.lineage = {k: v for k, v in tags.items() if k.startswith(("data.", "tunery."))}
        self.lineage["base_model"] = params.get("model.name", "")
        self.where = {"tracking_uri": self.client.tracking_uri, "run_id": self.run_id}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def artifact(self, path: Path, kind: ArtifactKind) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        else:
            self.client.log_artifact(self.run_id, str(path))
        if kind == "model" and self.options.register_:
            self._register(path.name)

    def _register(self, artifact_path: str) -> None:
        """A new version of the registered model, its source the run's adapter, its lineage as tags."""
        from mlflow.exceptions import MlflowException

        name = self.options.registered_model or self.options.experiment
        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{artifact_path}"
        version = self.client.create_model_version(name, source, run_id=self.run_id, tags=self.lineage)
        self.where |= {"registered_model": name, "model_version": str(version.version)}

    def finish(self, completed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if completed else "FAILED")


def mlflow_store(cfg: TuneryConfig) -> tuple[str | None, str | None]:
    """(tracking URI, artifact location of a new experiment; None: the store's own).

    `tunery train` uses any URI its user names. A service job's URI came over the network, so it
    goes through the server's URL policy again here (DNS may have changed since the request); with
    none named, the operator's MLFLOW_TRACKING_URI, else a store inside the job's run folder: never
    mlflow's default of ./mlflow.db and ./mlruns in the server's working directory.
    """
    named = cfg.mlflow.tracking_uri
    policy = UrlPolicy.for_this_job()
    if policy is None:
        return named or os.environ.get("MLFLOW_TRACKING_URI"), None
    if named:
        policy.check(named, "mlflow.tracking_uri")
        return named, None
    if operators := os.environ.get("MLFLOW_TRACKING_URI"):
        return operators, None
    run_dir = (Path(cfg.output_dir) / str(cfg.run_name)).resolve()
    return f"sqlite:///{run_dir / 'mlflow.db'}", (run_dir / "mlruns").as_uri()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer is the answer: a redirect may point anywhere


def check_server_answers(uri: str, timeout: float = 5.0, follow_redirects: bool = True) -> None:
    """MLflow's /health within `timeout` seconds, else one line saying so (before any training)."""
    opener = urllib.request.build_opener(*([] if follow_redirects else [_NoRedirects()]))
    try:
        with opener.open(f"{uri.rstrip('/')}/health", timeout=timeout) as answer:
            if answer.status == 200:
                return
            problem = f"answered HTTP {answer.status}"
    except urllib.error.HTTPError as err:
        problem = f"answered HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        problem = f"does not answer ({_first_line(getattr(err, 'reason', err))})"
    raise TrackerUnavailable(
        f"mlflow: the tracking server at mlflow.tracking_uri={uri} {problem}; start it or fix the URI"
    )


# --- Weights & Biases -------------------------------------------------------------------------


class WandbTracker:
    """A run in wandb.project; WANDB_MODE=offline keeps it in RUN/wandb for a later `wandb sync`."""

    name = "wandb"

    def __init__(self, cfg: TuneryConfig) -> None:
        import wandb

        self.wandb = wandb
        self.options = cfg.wandb
        mode = os.environ.get("WANDB_MODE", "online")
        if mode not in ("offline", "disabled", "dryrun") and not _wandb_key_known():
            raise TrackerUnavailable(
                "wandb: no API key (set WANDB_API_KEY, run `wandb login`, or WANDB_MODE=offline)"
            )
        self.handle: Any = None
        self.where: dict[str, str] = {}

    def start(self, run: Run, params: dict[str, str], tags: dict[str, str]) -> None:
        self.handle = self.wandb.init(
            project=self.options.project, entity=self.options.entity, name=self.options.name or run.name,
            dir=str(run.path), config=params | tags, tags=[f"{k}:{v}"[:64] for k, v in sorted(tags.items())
                                                           if not k.startswith("tunery.run")],
            settings=self.wandb.Settings(console="off", silent=True), reinit="create_new",
        )  # fmt: skip
        self.where = {"id": self.handle.id, "dir": str(Path(self.handle.dir).parent)}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.handle.log(metrics, step=step)

    def artifact(self, path: Path, kind: ArtifactKind) -> None:
        artifact = self.wandb.Artifact(f"{self.handle.name}-{kind}", type=kind)
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.handle.log_artifact(artifact)

    def finish(self, completed: bool) -> None:
        self.handle.finish(exit_code=0 if completed else 1)


def _wandb_key_known() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
