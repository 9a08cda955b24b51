"""train.report_to against the real back-ends: TensorBoard event files, an MLflow server, W&B offline."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import tunery
from tests.training.test_train import config_for
from tunery.errors import TuneryError
from tunery.training.tracking import MlflowTracker, TrackerUnavailable

STEPS = 4


def tracked_config(model_dir, files, out, *trackers, **sections) -> dict:
    config = config_for(model_dir, files, out, max_steps=STEPS, eval_every=2)
    config["train"]["report_to"] = list(trackers)
    config["train"]["tracking_tags"] = {"team": "tests"}
    return config | sections


# --- TensorBoard ------------------------------------------------------------------------------


def test_tensorboard_event_files_hold_the_metrics_and_the_dataset_hash(tiny_model_dir, chat_files, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tunery.train(tracked_config(tiny_model_dir, chat_files, tmp_path, "tensorboard"), quiet=True)
    events = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    for name in ("loss", "lr", "tokens_per_s", "val_loss", "final/train_loss"):
        assert name in scalars, (name, scalars)
    assert [e.step for e in events.Scalars("loss")] == list(range(1, STEPS + 1))
    history_losses = [row["loss"] for row in run.history() if "loss" in row]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(history_losses, rel=1e-6)
    assert [e.step for e in events.Scalars("val_loss")] == [2, 4]
    tags_text = events.Tensors("tags/text_summary")[0].tensor_proto.string_val[0].decode()
    assert run.record["data"]["sources"]["train"]["content_hash"] in tags_text
    assert "team: tests" in tags_text
    assert run.record["tracking"]["tensorboard"]["logdir"].endswith("tensorboard")


def test_an_unknown_tracker_is_refused_with_the_valid_names(tiny_model_dir, chat_files, tmp_path):
    config = tracked_config(tiny_model_dir, chat_files, tmp_path, "neptune")
    with pytest.raises(TuneryError, match="report_to.*'tensorboard', 'mlflow' or 'wandb'"):
        tunery.train(config, quiet=True)


# --- MLflow -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server`: SQLite backend, local artifact root, a free loopback port."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "art"),
    ]  # fmt: skip
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # the machine is loaded: generous
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server, uri
        except OSError:
            time.sleep(0.5)
        if server.poll() is not None:
            break
    stop_server(server)
    pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    pytest.importorskip("mlflow")
    server, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    stop_server(server)


def test_mlflow_run_has_metrics_params_tags_artifacts_and_a_registered_version(
    mlflow_server, tiny_model_dir, chat_files, tmp_path
):
    from mlflow import MlflowClient

    mlflow = {
        "tracking_uri": mlflow_server,
        "experiment": "tests",
        "register": True,
        "registered_model": "tiny",
    }
    run = tunery.train(
        tracked_config(tiny_model_dir, chat_files, tmp_path, "mlflow", mlflow=mlflow), quiet=True
    )
    run_id = run.record["tracking"]["mlflow"]["run_id"]
    client = MlflowClient(tracking_uri=mlflow_server)
    stored = client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["train.lr"] == "0.005" and stored.data.params["lora.r"] == "4"
    assert (
        stored.data.tags["data.train.content_hash"] == run.record["data"]["sources"]["train"]["content_hash"]
    )
    assert stored.data.tags["team"] == "tests"
    losses = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, STEPS + 1))
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [2, 4]
    assert stored.data.metrics["final/steps"] == STEPS
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"adapter", "run.json"} <= artifacts
    assert "adapter/adapter_model.safetensors" in {a.path for a in client.list_artifacts(run_id, "adapter")}
    (version,) = client.search_model_versions("name='tiny'")
    assert version.run_id == run_id and version.source.endswith("/adapter")
    assert version.tags["data.train.content_hash"] == stored.data.tags["data.train.content_hash"]
    assert version.tags["base_model"] == str(tiny_model_dir)


def test_a_service_jobs_mlflow_writes_only_in_its_run_folder(tmp_path, monkeypatch):
    """With no URI named, mlflow's default (./mlflow.db and ./mlruns) would land in the server's working
    directory; a job (the runner's environment says so) keeps its store in the run folder."""
    pytest.importorskip("mlflow")
    from tunery.config import load_config
    from tunery.run import Run
    from tunery.urlpolicy import UrlPolicy

    cwd = tmp_path / "server-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name, value in UrlPolicy.of([]).job_env().items():
        monkeypatch.setenv(name, value)
    cfg = load_config({"data": {"train": "x.jsonl"}, "output_dir": str(tmp_path / "jobs"), "run_name": "ftjob-1",
                       "train": {"report_to": ["mlflow"]}})  # fmt: skip
    run = Run.create(cfg)
    (run.path / "adapter").mkdir()
    (run.path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    tracker = MlflowTracker(cfg)
    tracker.start(run, {"model.name": "m"}, {"job": "ftjob-1"})
    tracker.log(1, {"loss": 1.0})
    tracker.artifact(run.path / "adapter", "model")
    tracker.finish(completed=True)
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert tracker.where["tracking_uri"] == f"sqlite:///{run.path.resolve() / 'mlflow.db'}"
    assert any((run.path / "mlruns").rglob("adapter_model.safetensors"))


@pytest.mark.parametrize(
    "uri",
    ["sqlite:////tmp/tunery-job.db", "file:///tmp", "mlruns", "http://127.0.0.1:{port}", "http://0x7f.1"],
)
def test_a_service_job_checks_its_tracking_uri_again_before_training(uri, tmp_path, monkeypatch):
    """The trainer asks the server's URL policy too (a job row from before it, or DNS that changed)."""
    pytest.importorskip("mlflow")
    from tunery.config import load_config
    from tunery.urlpolicy import UrlNotAllowed, UrlPolicy

    (name, value), = UrlPolicy.of([]).job_env().items()  # fmt: skip
    monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    uri = uri.format(port=free_port())
    cfg = load_config(
        {"data": {"train": "x.jsonl"}, "mlflow": {"tracking_uri": uri}, "output_dir": str(tmp_path)}
    )
    with pytest.raises(UrlNotAllowed) as caught:
        MlflowTracker(cfg)
    assert caught.value.code == "url_not_allowed" and caught.value.param == "mlflow.tracking_uri"
    assert list(tmp_path.iterdir()) == [] and not Path("/tmp/tunery-job.db").exists()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "nosuchscheme://nowhere"])
def test_a_misconfigured_mlflow_uri_fails_at_start_with_one_line(uri, tiny_model_dir, chat_files, tmp_path):
    pytest.importorskip("mlflow")
    uri = uri.format(port=free_port())  # nothing listens there
    config = tracked_config(tiny_model_dir, chat_files, tmp_path, "mlflow", mlflow={"tracking_uri": uri})
    started = time.monotonic()
    with pytest.raises(TrackerUnavailable) as caught:
        tunery.train(config, quiet=True)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("mlflow:") and "mlflow.tracking_uri" in message
    assert caught.value.code == "tracker_unavailable"
    assert time.monotonic() - started < 60
    assert not (tmp_path / "run" / "adapter").exists()  # refused before any training


def test_killing_the_mlflow_server_mid_run_leaves_a_complete_run_with_a_warning(
    tiny_model_dir, chat_files, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    server, uri = start_mlflow_server(tmp_path / "mlflow")
    real_log = MlflowTracker.log

    def log_then_kill_at_step_2(self, step, metrics):
        if step >= 2:
            stop_server(server)
        real_log(self, step, metrics)

    monkeypatch.setattr(MlflowTracker, "log", log_then_kill_at_step_2)
    try:
        config = tracked_config(
            tiny_model_dir, chat_files, tmp_path / "runs", "mlflow", mlflow={"tracking_uri": uri}
        )
        run = tunery.train(config, quiet=True)
    finally:
        stop_server(server)
    assert run.record["status"] == "completed" and run.metrics["steps"] == STEPS
    assert (run.path / "adapter" / "adapter_model.safetensors").is_file()
    (warning,) = [w for w in run.record["warnings"] if w["kind"] == "tracker"]
    assert warning["step"] == 2 and warning["message"].startswith("mlflow stopped answering")
    assert "mlflow stopped answering" in (run.path / "train.log").read_text()


# --- Weights & Biases -------------------------------------------------------------------------


def read_wandb_records(path: Path) -> list:
    """The records of an offline run's .wandb file.

    wandb 0.31 reads it in its Go core only; the file is LevelDB's log format (a 7-byte
    ':W&B' header, 32 KiB blocks, 7-byte record headers: crc32, length, type FULL/FIRST/
    MIDDLE/LAST) around wandb's own protobuf `Record`, which parses each one here.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_wandb_offline_run_holds_history_config_and_the_adapter(
    tiny_model_dir, chat_files, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = tracked_config(tiny_model_dir, chat_files, tmp_path, "wandb", wandb={"project": "tests"})
    run = tunery.train(config, quiet=True)
    (file,) = (run.path / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_wandb_records(file)
    deadline = time.monotonic() + 60  # wandb's core process writes the file; it may still be flushing
    while "exit" not in {r.WhichOneof("record_type") for r in records} and time.monotonic() < deadline:
        time.sleep(0.5)
        records = read_wandb_records(file)
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]  # fmt: skip
    losses = [row["loss"] for row in history if "loss" in row]
    assert losses == pytest.approx([row["loss"] for row in run.history() if "loss" in row], rel=1e-6)
    assert [row["_step"] for row in history if "val_loss" in row] == [2, 4]
    config_items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for r in records
                    if r.WhichOneof("record_type") == "run" for item in r.run.config.update}  # fmt: skip
    assert config_items["train.lr"] == "0.005"
    assert config_items["data.train.content_hash"] == run.record["data"]["sources"]["train"]["content_hash"]
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert {a.type for a in artifacts} == {"model", "report"}
    assert run.record["tracking"]["wandb"]["id"] in file.name


def test_wandb_online_without_a_key_fails_at_start_with_one_line(
    tiny_model_dir, chat_files, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tracked_config(tiny_model_dir, chat_files, tmp_path, "wandb")
    with pytest.raises(TrackerUnavailable, match=r"^wandb: no API key \(set WANDB_API_KEY"):
        tunery.train(config, quiet=True)
