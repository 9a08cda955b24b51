"""Encoder-decoder fine-tuning (T5, BART): the prompt goes to the encoder, the answer is the target.

Chat and instruction rows: the conversation up to the last assistant turn, rendered with the
chat template and its generation prompt (as `tunery chat` renders it), is the input; that last
answer is the target. Prompt/completion rows: prompt in, completion out.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunery.config.registry import task_spec
from tunery.data.prepare import DataError, PreparedData, load_split
from tunery.data.tokenize import IGNORE, Encoded, EncodedData
from tunery.data.types import Example

SPEC = task_spec("seq2seq")


def load_model(path: str, device, dtype, config, labels=None, **load_kwargs):
    from transformers import AutoModelForSeq2SeqLM

    from tunery.models import model_construction

    with model_construction():
        model = AutoModelForSeq2SeqLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=config.model.trust_remote_code, **load_kwargs
        )
    return model if "device_map" in load_kwargs else model.to(device)


def prepare(config, tokenizer) -> PreparedData:
    data = config.data
    train, valid, sources = load_split(data, config.train.seed)
    encoded_train = encode(train, tokenizer, data.max_length)
    encoded_valid = encode(valid, tokenizer, data.max_length) if valid else None
    return PreparedData(encoded_train, encoded_valid, sources)


def split_pair(example: Example, tokenizer) -> tuple[str, str]:
    if example.kind == "completion":
        return example.prompt, example.completion
    if example.kind != "chat":
        raise DataError(f"line {example.line}: seq2seq needs chat, instruction or prompt/completion rows")
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    return prompt, messages[last]["content"]


def encode(examples: list[Example], tokenizer, max_length: int) -> EncodedData:
    """`input_ids`: the encoder's tokens; `labels`: the decoder's target tokens, ending in EOS."""
    pairs = [split_pair(example, tokenizer) for example in examples]
    sources = tokenizer([p for p, _ in pairs], truncation=True, max_length=max_length)["input_ids"]
    targets = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    result = EncodedData(examples=[])
    for example, source, target in zip(examples, sources, targets, strict=True):
        labels = [*target[: max_length - 1], tokenizer.eos_token_id]
        result.examples.append(Encoded(example.line, source, labels))
    return result


def loss_for(model, data, config):
    return Seq2SeqLoss()


@dataclass
class Seq2SeqLoss:
    def collate(self, examples, pad_id: int) -> dict:
        import torch

        from tunery.data.batching import collate_padded

        batch = collate_padded([Encoded(e.line, e.input_ids, e.input_ids) for e in examples], pad_id)
        width = max(len(e.labels) for e in examples)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for row, example in enumerate(examples):
            labels[row, : len(example.labels)] = torch.tensor(example.labels)
        batch["labels"] = labels
        return batch

    def count(self, examples) -> int:
        return sum(len(e.labels) for e in examples)

    def summed_loss(self, model, batch: dict):
        import torch.nn.functional as F

        labels = batch["labels"]
        # Passing labels lets the model build its decoder inputs (labels shifted right).
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
        ).logits
        keep = labels != IGNORE
        return F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum"), int(keep.sum())
