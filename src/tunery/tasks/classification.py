"""Sequence classification: a label per text, the label set read from the training data.

Encoders (MiniLM, BERT) pool the [CLS] token; decoders (llama, qwen, …) the last real token,
which transformers finds from `pad_token_id`. The label names are saved beside the weights
(`labels.json`) so a run reloads with the same head.

    tunery train cfg.yaml --set task=classification --set model=minilm-l6
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.config.registry import task_spec
from tunery.data.prepare import DataError, PreparedData, load_split
from tunery.data.tokenize import Encoded, EncodedData

if TYPE_CHECKING:
    import torch

SPEC = task_spec("classification")

LABELS_FILE = "labels.json"


@dataclass
class LabelledData(PreparedData):
    labels: list[str] = field(default_factory=list)  # class index -> label name
    counts: list[int] = field(default_factory=list)  # training examples per class


def load_model(path: str, device, dtype, config, labels=None, **load_kwargs):
    from transformers import AutoModelForSequenceClassification

    from tunery.models import load_tokenizer, model_construction

    labels = list(labels or [])
    with model_construction():
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            dtype=dtype,
            trust_remote_code=config.model.trust_remote_code,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            **load_kwargs,
        )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = load_tokenizer(path).pad_token_id  # decoders pool the last non-pad token
    return model if "device_map" in load_kwargs else model.to(device)


def prepare(config, tokenizer) -> LabelledData:
    data = config.data
    train, valid, sources = load_split(data, config.train.seed, fmt="classification")
    counts = Counter(str(e.label) for e in train)
    labels = sorted(counts)
    if len(labels) < 2:
        raise DataError(f"{data.train}: classification needs at least two labels, found {labels}")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(e.label) for e in valid} - set(labels))
    if unknown:
        raise DataError(
            f"validation labels {unknown} never occur in {data.train}; the model cannot learn them"
        )

    def encode(examples) -> EncodedData:
        ids = tokenizer([e.text for e in examples], truncation=True, max_length=data.max_length)["input_ids"]
        return EncodedData(
            [Encoded(e.line, i, [index[str(e.label)]]) for e, i in zip(examples, ids, strict=True)]
        )

    return LabelledData(
        encode(train), encode(valid) if valid else None, sources, labels, [counts[x] for x in labels]
    )


def save_labels(folder: Path, labels: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LABELS_FILE).write_text(json.dumps(labels), encoding="utf-8")


def read_labels(folder: Path) -> list[str]:
    return json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))


def loss_for(model, data: LabelledData, config):
    import torch

    weights = None
    if config.classification.class_weights == "balanced":
        total, k = sum(data.counts), len(data.counts)
        weights = torch.tensor([total / (k * c) for c in data.counts], device=next(model.parameters()).device)
    return ClassificationLoss(weights)


@dataclass
class ClassificationLoss:
    """One loss term per example (the `labels` of an `Encoded` here hold the class index)."""

    weights: torch.Tensor | None = None  # per-class weights

    def collate(self, examples, pad_id: int) -> dict:
        import torch

        from tunery.data.batching import collate_padded

        batch = collate_padded(
            [Encoded(e.line, e.input_ids, [0] * len(e.input_ids)) for e in examples], pad_id
        )
        batch["labels"] = torch.tensor([e.labels[0] for e in examples], dtype=torch.long)
        return batch

    def count(self, examples) -> int:
        return len(examples)

    def summed_loss(self, model, batch: dict):
        import torch.nn.functional as F

        logits = self.logits(model, batch)
        loss = F.cross_entropy(logits.float(), batch["labels"], weight=self.weights, reduction="sum")
        return loss, len(batch["labels"])

    def logits(self, model, batch: dict):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def scores(model, data: LabelledData, pad_id: int, batch_size: int = 32) -> dict:
    """Accuracy and macro-F1 on the validation set."""
    import torch

    from tunery.tasks.label_scores import classification_scores

    if data.validation is None:
        return {}
    loss = ClassificationLoss()
    model.eval()
    device = next(model.parameters()).device
    examples = data.validation.examples
    predicted: list[int] = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {
                k: v.to(device) for k, v in loss.collate(examples[start : start + batch_size], pad_id).items()
            }
            predicted.extend(loss.logits(model, batch).argmax(-1).tolist())
    result = classification_scores(
        [data.labels[i] for i in predicted], [data.labels[e.labels[0]] for e in examples], data.labels
    )
    return {"accuracy": round(result.accuracy, 4), "macro_f1": round(result.macro_f1, 4)}
