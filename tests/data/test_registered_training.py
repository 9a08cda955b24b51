"""A run trained on NAME@VERSION records it, and re-running from its record uses the same rows."""

from __future__ import annotations

import tunery
from tests.conftest import chat_rows, write_jsonl
from tunery.config import load_config
from tunery.data.prepare import prepare_data


def register_two_versions(store, tmp_path):
    file = write_jsonl(tmp_path / "orders.jsonl", chat_rows(12))
    store.add("orders", file)
    write_jsonl(file, chat_rows(20))  # the user's file moves on to version 2
    store.add("orders", file)


def config(tmp_path, model: str, train: str) -> dict:
    return {
        "model": model,
        "data": {"train": train, "validation_split": 0.25, "max_length": 64},
        "train": {"max_steps": 1, "batch_size": 4, "seed": 3},
        "output_dir": str(tmp_path / "runs"),
    }


def test_prepare_data_reads_the_named_version_and_records_it(store, tmp_path, tiny_tokenizer):
    register_two_versions(store, tmp_path)
    cfg = load_config(config(tmp_path, "unused", "orders@1"))
    prepared = prepare_data(cfg.data, tiny_tokenizer, seed=3)
    source = prepared.summary()["sources"]["train"]
    assert source["dataset"] == "orders@1"
    assert source["content_hash"] == store.get("orders", 1).content_hash
    assert len(prepared.train.examples) + len(prepared.validation.examples) == 12


def test_a_plain_name_trains_on_the_latest_version_and_records_which(store, tmp_path, tiny_tokenizer):
    register_two_versions(store, tmp_path)
    cfg = load_config(config(tmp_path, "unused", "orders"))
    assert prepare_data(cfg.data, tiny_tokenizer, seed=3).sources["train"]["dataset"] == "orders@2"


def test_a_run_records_the_version_and_its_record_prepares_the_same_rows_again(
    store, tmp_path, tiny_model_dir, tiny_tokenizer
):
    register_two_versions(store, tmp_path)
    run = tunery.train(config(tmp_path, str(tiny_model_dir), "orders@1") | {"run_name": "a"}, quiet=True)
    recorded = run.record
    assert recorded["data"]["sources"]["train"]["dataset"] == "orders@1"

    rerun = load_config(recorded["config"])  # what `tunery train` gets when re-run from the record
    again = prepare_data(rerun.data, tiny_tokenizer, seed=rerun.train.seed).summary()
    assert again["sources"] == recorded["data"]["sources"]
    assert again["train"] == recorded["data"]["train"]


def test_a_run_on_a_plain_name_pins_the_version_in_its_config(store, tmp_path, tiny_model_dir):
    register_two_versions(store, tmp_path)
    run = tunery.train(config(tmp_path, str(tiny_model_dir), "orders") | {"run_name": "b"}, quiet=True)
    assert run.config.data.train == "orders@2"
    store.add("orders", write_jsonl(tmp_path / "orders.jsonl", chat_rows(30)))  # a version 3 arrives later
    assert load_config(run.path / "config.yaml").data.train == "orders@2"


def test_the_registry_does_not_import_the_pipeline_that_reads_it():
    """prepare.py resolves NAME@VERSION through the registry; the registry needs only formats.load_checked."""
    import ast
    import inspect

    from tunery.data import registry

    tree = ast.parse(inspect.getsource(registry))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "tunery.data.formats" in imported
    assert "tunery.data.prepare" not in imported
