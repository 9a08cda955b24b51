"""The per-row loss audit: each row's losses under the tuned and the base model, its flags, its files.

The acceptance test trains the tiny model on a classification-style chat (the answer is a function
of the prompt's first word) with 5% of the labels swapped, and checks the audit finds them.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import tunery
from tests.conftest import chat_rows, write_jsonl
from tunery.data.registry import DatasetStore
from tunery.data.types import DataFileError
from tunery.evaluate.audit import AuditError, audit_run
from tunery.evaluate.audit_files import AUDIT_FILES, drop_flagged
from tunery.evaluate.audit_rules import (
    AuditRules,
    RowAudit,
    flag_disagreements,
    flag_exact_duplicates,
    flag_split,
)

CLASSES = {"apple": "fruit", "fox": "animal", "dog": "animal", "Paris": "city", "France": "country"}
CLASSES["brown"] = "color"


def classification_chats(n: int, seed: int) -> tuple[list[dict], list[int]]:
    """n chats `<word> <i>` -> the word's class, 5% of them (at random lines) with another class; and those lines.

    Random lines, not every 20th: a regular pattern is one the model can learn, and then it is not noise.
    """
    rng, words, labels = random.Random(seed), list(CLASSES), sorted(set(CLASSES.values()))
    noisy = set(rng.sample(range(n), n // 20))
    rows = []
    for i in range(n):
        word = words[i % len(words)]
        label = CLASSES[word]
        if i in noisy:
            label = rng.choice([other for other in labels if other != label])
        messages = [{"role": "user", "content": f"{word} {i}"}, {"role": "assistant", "content": label}]
        rows.append({"messages": messages})
    return rows, sorted(i + 1 for i in noisy)


@pytest.fixture(scope="module")
def planted(tiny_model_dir, tmp_path_factory):
    """(audit, planted (split, line) pairs) of a run trained on 160 rows with 8 swapped labels; validated on 40 with 2."""
    folder = tmp_path_factory.mktemp("planted")
    train_rows, train_planted = classification_chats(160, seed=0)
    valid_rows, valid_planted = classification_chats(40, seed=1)
    files = write_jsonl(folder / "train.jsonl", train_rows), write_jsonl(folder / "valid.jsonl", valid_rows)
    config = {
        # Full fine-tuning: LoRA on a random 16-wide model learns this too slowly for a unit test.
        "model": str(tiny_model_dir), "method": "full",
        "data": {"train": str(files[0]), "validation": str(files[1]), "max_length": 64},
        "train": {"batch_size": 16, "lr": 2e-2, "epochs": 12, "seed": 1, "warmup_ratio": 0.0},
        "output_dir": str(folder / "runs"), "run_name": "planted",
    }  # fmt: skip
    run = tunery.train(config, quiet=True)
    planted_rows = {("train", line) for line in train_planted} | {
        ("validation", line) for line in valid_planted
    }
    return audit_run(run.path), planted_rows


def test_the_audit_finds_planted_label_noise(planted):
    audit, planted_rows = planted
    flagged = {(row.split, row.line) for row in audit.flagged()}
    found = flagged & planted_rows
    recall, precision = len(found) / len(planted_rows), len(found) / max(len(flagged), 1)
    print(
        f"\nplanted {len(planted_rows)}, flagged {len(flagged)}: recall {recall:.2f}, precision {precision:.2f}"
    )
    assert recall >= 0.8 and precision >= 0.5, (sorted(planted_rows), sorted(flagged))
    worst = {(row.split, row.line) for row in audit.rows[: len(planted_rows)]}
    assert len(worst & planted_rows) >= 0.8 * len(planted_rows)  # worst rows come first


def test_each_split_gets_its_own_cuts_and_every_row_its_numbers(planted):
    audit, _ = planted
    summary = audit.summary
    assert summary["rows"] == 200 and {s["split"]: s["rows"] for s in summary["data"]} == {
        "train": 160,
        "validation": 40,
    }
    assert set(summary["cuts"]) == {"train", "validation"}
    assert summary["cuts"]["train"] != summary["cuts"]["validation"]
    assert summary["timing"]["strategy"] == "packed" and summary["timing"]["rows_per_s"] > 0
    for row in audit.rows:
        assert row.tokens >= 2  # the label's tokens and the end of the turn
        assert row.loss_drop == pytest.approx(row.base_loss - row.tuned_loss, abs=2e-6)
        assert 0.0 <= row.agreement <= 1.0 and -1e-6 <= row.contradiction <= 1.0


def test_the_audit_writes_its_files_worst_first(planted):
    audit, _ = planted
    assert set(AUDIT_FILES) <= {path.name for path in audit.folder.iterdir()}
    lines = [json.loads(line) for line in (audit.folder / "rows.jsonl").read_text().splitlines()]
    assert [(r["split"], r["line"]) for r in lines] == [(r.split, r.line) for r in audit.rows]
    table = list(csv.DictReader(io.StringIO((audit.folder / "rows.csv").read_text())))
    assert [int(r["line"]) for r in table] == [r.line for r in audit.rows]
    assert table[0]["flags"] == ";".join(audit.rows[0].flags) and table[0]["rank"] == "1"
    assert json.loads((audit.folder / "summary.json").read_text())["flagged"] == len(audit.flagged())
    page = (audit.folder / "audit.html").read_text()
    assert f'<td class="num">{audit.rows[0].line}</td>' in page and "Rows, worst first" in page


def test_drop_flagged_makes_a_version_with_lineage_to_the_original(planted, tmp_path):
    audit, _ = planted
    store = DatasetStore(tmp_path / "datasets")
    made = drop_flagged(audit, store=store)
    by_source: dict[Path, set[int]] = {Path(row.source).resolve(): set() for row in audit.rows}
    for row in audit.flagged():
        by_source[Path(row.source).resolve()].add(row.line)
    assert {entry["parent"] for entry in made} == {"train@1", "valid@1"}
    for entry in made:
        name = entry["dataset"].split("@")[0]
        original, cleaned = store.get(name, 1), store.get(name, 2)
        assert cleaned.parent == 1 and entry["dataset"] == f"{name}@2"
        dropped = [item["line"] for item in cleaned.recipe["audit"]["dropped"]]
        assert dropped == sorted(by_source[Path(original.source)]) == entry["dropped_lines"]
        assert cleaned.recipe["audit"]["run"] == audit.run and cleaned.recipe["audit"]["from"] == f"{name}@1"
        assert cleaned.rows == original.rows - len(dropped) and cleaned.changes["removed"] == len(dropped)


def test_drop_flagged_of_an_older_version_names_that_version_as_parent(planted, tmp_path):
    audit, _ = planted
    store = DatasetStore(tmp_path / "datasets")
    train = next(source for source in audit.sources if source.split == "train")
    store.add("orders", train.path)
    store.add("orders", write_jsonl(tmp_path / "other.jsonl", chat_rows(12)))  # orders@2, a newer upload
    sources = [replace(source, dataset="orders@1") if source is train else source for source in audit.sources]
    made = drop_flagged(replace(audit, sources=sources), store=store)
    newest = store.get("orders")
    assert newest.version == 3 and newest.parent == 1 and newest.recipe["audit"]["from"] == "orders@1"
    assert any(entry["dataset"] == "orders@3" for entry in made)


# --- scores: what the packed pass computes is each row's own loss ------------------------------
@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    from tests.training.test_train import config_for

    folder = tmp_path_factory.mktemp("audit-lora")
    files = (
        write_jsonl(folder / "train.jsonl", chat_rows(20)),
        write_jsonl(folder / "valid.jsonl", chat_rows(5)),
    )
    return tunery.train(config_for(tiny_model_dir, files, folder / "runs", max_steps=4), quiet=True)


def test_packed_scores_are_each_rows_own_loss_under_the_tuned_and_the_base_model(lora_run, tmp_path):
    import torch

    from tunery.data.batching import collate_padded
    from tunery.inference import load_run_model
    from tunery.nn.loss import summed_loss

    audit = audit_run(lora_run.path, out=tmp_path / "audit")
    model, tokenizer = load_run_model(lora_run.path)
    from tunery.data.formats import load_checked
    from tunery.data.tokenize import encode_examples

    encoded = encode_examples(load_checked(lora_run.config.data.train).examples, tokenizer, 64).examples
    by_line = {row.line: row for row in audit.rows if row.split == "train"}

    def alone(example) -> float:  # one row, unpacked and unpadded: what its loss is by definition
        with torch.no_grad():
            loss, n = summed_loss(model, collate_padded([example], tokenizer.pad_token_id))
        return loss.item() / n

    for example in encoded:
        assert by_line[example.line].tuned_loss == pytest.approx(alone(example), abs=1e-4)
        with model.disable_adapter():
            assert by_line[example.line].base_loss == pytest.approx(alone(example), abs=1e-4)
    assert any(row.loss_drop != 0 for row in audit.rows)


def test_one_row_per_pass_and_padded_batches_give_the_same_scores_as_packing(lora_run):
    from tunery.data.formats import load_checked
    from tunery.data.tokenize import encode_examples
    from tunery.evaluate.audit_scores import score_examples
    from tunery.inference import load_run_model
    from tunery.nn.loss import causal_lm_parts

    model, tokenizer = load_run_model(lora_run.path)
    encoded = encode_examples(load_checked(lora_run.config.data.train).examples, tokenizer, 64).examples
    parts, pad = causal_lm_parts(model), tokenizer.pad_token_id
    packed = score_examples(model, parts, encoded, "packed", pad, 8192)
    for other in (
        score_examples(model, parts, encoded, "packed", 1, 1),
        score_examples(model, parts, encoded, "grouped", pad, 100),
    ):
        for a, b in zip(packed, other, strict=True):
            assert (a.tokens, a.predicted) == (b.tokens, b.predicted)
            assert a.loss == pytest.approx(b.loss, abs=1e-5) and a.contradiction == pytest.approx(
                b.contradiction, abs=1e-5
            )


# --- hostile inputs ---------------------------------------------------------------------------
def test_a_run_without_an_adapter_is_refused_before_anything_loads(lora_run, tmp_path):
    copy = shutil.copytree(lora_run.path, tmp_path / "run")
    shutil.rmtree(copy / "adapter")
    with pytest.raises(AuditError, match="has no trained adapter"):
        audit_run(copy)
    with pytest.raises(FileNotFoundError, match="not a tunery run"):
        audit_run(tmp_path)


def test_a_run_of_another_task_is_refused(lora_run, tmp_path):
    copy = shutil.copytree(lora_run.path, tmp_path / "run")
    config = (copy / "config.yaml").read_text().replace("task: sft", "task: seq2seq")
    (copy / "config.yaml").write_text(config)
    with pytest.raises(AuditError, match="task=seq2seq"):
        audit_run(copy)


def test_bad_rows_are_skipped_and_listed_and_a_broken_file_is_named_with_its_line(lora_run, tmp_path):
    good = [json.dumps(row) for row in chat_rows(4)]
    data = tmp_path / "mixed.jsonl"
    data.write_text(
        "\n".join([good[0], '{"messages": [{"role": "user", "content": "no answer"}]}', *good[1:], ""])
    )
    audit = audit_run(lora_run.path, data=str(data), out=tmp_path / "audit")
    assert sorted(row.line for row in audit.rows) == [1, 3, 4, 5]
    assert [skip["line"] for skip in audit.summary["data"][0]["skipped"]] == [2]
    with pytest.raises(AuditError, match="lines 2 cannot be read as rows"):
        audit_run(lora_run.path, data=str(data), drop=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good[0] + "\n{not json\n")
    with pytest.raises(DataFileError, match="broken.jsonl:2: invalid JSON"):
        audit_run(lora_run.path, data=str(broken))


def test_empty_data_and_data_with_nothing_to_score_are_refused(lora_run, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataFileError, match="file is empty"):
        audit_run(lora_run.path, data=str(empty))
    long_prompt = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    too_long = write_jsonl(tmp_path / "long.jsonl", [{"messages": long_prompt}])
    with pytest.raises(AuditError, match="no row has an answer token to score"):
        audit_run(lora_run.path, data=str(too_long))


def test_the_csv_and_the_page_escape_what_the_rows_hold(lora_run, tmp_path):
    hostile = [
        {
            "messages": [
                {"role": "user", "content": "<script>alert(1)</script>"},
                {"role": "assistant", "content": '=HYPERLINK("http://x")'},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": 'a, "quoted"\nnew line'},
                {"role": "assistant", "content": "+1, -2 <b>bold</b>"},
            ]
        },
    ]
    audit = audit_run(
        lora_run.path, data=str(write_jsonl(tmp_path / "hostile.jsonl", hostile)), out=tmp_path / "a"
    )
    page = (audit.folder / "audit.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold" not in page and "&lt;b&gt;bold" in page
    cells = {row["line"]: row for row in csv.DictReader(io.StringIO((audit.folder / "rows.csv").read_text()))}
    assert len(cells) == 2
    assert cells["1"]["answer"] == '\'=HYPERLINK("http://x")'  # a spreadsheet shows it, never runs it
    assert cells["2"]["prompt"] == 'user: a, "quoted"\nnew line' and cells["2"]["answer"].startswith("'+1")


# --- the rules, on hand-made rows -------------------------------------------------------------
def make_row(
    line: int, tuned: float, base: float = 3.0, contradiction: float = 0.0, split: str = "train"
) -> RowAudit:
    return RowAudit(
        split, "d.jsonl", line, 4, tuned, base, base - tuned, 0.5, 0.5, 0.5, contradiction, "p", "a"
    )


def test_a_well_learned_split_flags_nothing_and_an_outlier_is_not_learned():
    rows = [make_row(i, 0.010 + 0.001 * (i % 5)) for i in range(1, 41)]
    flag_split(rows, AuditRules())
    assert not any(row.flags for row in rows)  # a few thousandths apart: under the floor
    rows[5].tuned_loss, rows[5].loss_drop = 1.2, 1.8
    cuts = flag_split(rows, AuditRules())
    assert [row.line for row in rows if row.flags] == [6] and rows[5].flags == ["not_learned"]
    assert cuts["not_learned_loss_above"] == pytest.approx(0.012 + 3.5 * 0.05, abs=1e-3)


def test_confident_contradiction_is_label_noise_and_a_far_larger_drop_is_memorised():
    rows = [make_row(i, 1.0 + 0.01 * (i % 7), base=2.0, contradiction=0.05) for i in range(1, 31)]
    rows[0].contradiction = 0.6
    rows[1].tuned_loss, rows[1].base_loss, rows[1].loss_drop = 0.2, 6.0, 5.8
    flag_split(rows, AuditRules())
    assert rows[0].flags == ["label_noise"] and rows[1].flags == ["memorised"]
    assert not any(row.flags for row in rows[2:])


def test_a_split_too_small_for_statistics_gets_no_statistical_flags():
    rows = [make_row(i, loss) for i, loss in enumerate([0.1, 0.1, 5.0], start=1)]
    assert flag_split(rows, AuditRules()) == {} and not any(row.flags for row in rows)


def test_an_answer_that_near_duplicate_prompts_contradict_is_label_noise():
    from tunery.data.types import Example, Message

    def chat(line: int, prompt: str, answer: str) -> Example:
        return Example(line, "chat", (Message("user", prompt), Message("assistant", answer)))

    base = "Please classify the sentiment of this review: the soup was cold and the waiter rude"
    examples = [chat(i, base + "!" * (i % 3), "negative") for i in range(1, 6)]
    examples.append(chat(6, base + ".", "positive"))
    examples.append(chat(7, "An entirely different question about the weather tomorrow", "sunny"))
    rows = [make_row(e.line, 0.1) for e in examples]
    assert flag_disagreements(rows, examples, 0.85) == 1
    assert rows[5].flags == ["label_noise"] and "mostly answer 'negative'" in rows[5].reasons[0]


def test_a_repeated_row_is_memorised_from_its_second_copy():
    from tunery.data.types import Example, Message

    row = (Message("user", "hi"), Message("assistant", "hello"))
    examples = [
        Example(1, "chat", row),
        Example(2, "chat", (Message("user", "x"), Message("assistant", "y"))),
        Example(3, "chat", row),
    ]
    rows = [make_row(e.line, 0.1) for e in examples]
    assert flag_exact_duplicates(rows, examples) == 1
    assert rows[2].flags == ["memorised"] and "line 1" in rows[2].reasons[0] and not rows[0].flags
