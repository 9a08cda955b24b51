"""Preference tuning of a causal LM: DPO, IPO, ORPO, SimPO on pairs, KTO on labelled completions.

    tunery train cfg.yaml --set task=preference --set preference.loss=dpo --set preference.beta=0.1

Why the pieces are where they are:
- each pair is one padding-free packed row (chosen, then rejected), each side attending to
  itself only (nn/varlen_attention.py), and the head runs on answer tokens only;
- the reference model's log-probs (dpo, ipo, kto) are computed once, before the first step,
  from the same weights with the adapter switched off (`PeftModel.disable_adapter()`; full and
  freeze runs use their untouched starting weights), and cached on disk: no second model in
  memory and no second forward per step;
- the loop is SFT's: `PreferenceLoss` has the `collate`/`count`/`summed_loss` of a task's own
  loss, so accumulation, checkpoints, resume and early stopping are the same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from tunery.config.registry import method_spec, task_spec
from tunery.data.preference import PreferenceExample, load_preferences_checked
from tunery.data.preference_tokens import EncodedPreference, encode_preferences
from tunery.data.prepare import PreparedData, split_examples
from tunery.data.registry import resolve_data_path
from tunery.data.tokenize import EncodedData
from tunery.data.types import DataError
from tunery.errors import TuneryError

SPEC = task_spec("preference")
log = logging.getLogger("tunery.training")


class PreferenceSetupError(TuneryError, ValueError):
    """The method, loss and data of a preference run do not fit together; the message says how."""

    code = "invalid_config"


def load_model(path: str, device, dtype, config, labels=None, **load_kwargs):
    from transformers import AutoModelForCausalLM

    from tunery.models import model_construction
    from tunery.nn.varlen_attention import register

    attention = config.model.attn_implementation or register()  # pairs are always packed
    with model_construction():
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation=attention, trust_remote_code=config.model.trust_remote_code,
            **load_kwargs,
        )  # fmt: skip
    return model if "device_map" in load_kwargs else model.to(device)


def prepare(config, tokenizer) -> PreparedData:
    """Load, check, split and encode the preference files; refuses a loss the data cannot feed."""
    if method_spec(config.method).prompt_based:
        raise PreferenceSetupError(
            f"task=preference trains weights; method={config.method} learns prompt tokens instead. "
            "Use lora, dora, qlora, ia3, loha, lokr, oft, full or freeze"
        )
    data, loss = config.data, config.preference.loss
    train_path, train_dataset = resolve_data_path(data.train)
    train_file = load_preferences_checked(train_path)
    if train_file.format == "unpaired" and loss != "kto":
        raise PreferenceSetupError(
            f"{data.train}: rows are unpaired (completion + label); preference.loss={loss} needs "
            "chosen/rejected pairs. Use preference.loss=kto"
        )
    sources = {"train": _source(train_file, train_dataset)}
    if data.validation:
        valid_path, valid_dataset = resolve_data_path(data.validation)
        valid_file = load_preferences_checked(valid_path)
        sources["validation"] = _source(valid_file, valid_dataset)
        train, valid = train_file.examples, valid_file.examples
    else:
        # split_examples only shuffles and slices; a preference row splits like an SFT row.
        held = split_examples(cast(list, train_file.examples), data.validation_split, config.train.seed)
        train, valid = cast(tuple[list[PreferenceExample], list[PreferenceExample]], held)

    def encode(examples) -> EncodedData:
        return encode_preferences(examples, tokenizer, data.max_length, unpaired=loss == "kto")

    encoded = encode(train)
    if not encoded.examples:
        raise DataError(f"{data.train}: no row keeps an answer token after truncation to data.max_length")
    validation = encode(valid) if valid else None
    return PreparedData(encoded, validation if validation and validation.examples else None, sources)


def _source(loaded, dataset: str | None) -> dict:
    return {**({"dataset": dataset} if dataset else {}), "path": loaded.path,
            "format": f"preference/{loaded.format}", "content_hash": loaded.content_hash,
            "rows": loaded.n_rows}  # fmt: skip


def before_training(model, data: PreparedData, config, model_id: str) -> None:
    """Reference log-probs of every side, from the cache or computed now (the adapter switched off)."""
    from tunery.nn.preference_loss import REFERENCE_LOSSES
    from tunery.tasks.preference_reference import fill_reference

    if config.preference.loss not in REFERENCE_LOSSES:
        return
    parts = _parts(model)
    for split in (data.train, data.validation):
        if split is not None:
            pairs = cast(list[EncodedPreference], split.examples)  # encode_preferences made them
            fill_reference(model, parts, pairs, model_id, config.train.batch_size)


def loss_for(model, data, config) -> PreferenceLoss:
    from tunery.tasks.preference_reference import shares_prompts

    return PreferenceLoss(config.preference, _parts(model), shares_prompts(model))


def _parts(model):
    from tunery.nn.loss import causal_lm_parts

    return causal_lm_parts(model)


@dataclass
class PreferenceLoss:
    """A task's own loss for the loop: one term per pair (or KTO row), summed; metrics on the side."""

    settings: Any  # the config's `preference` section
    parts: Any  # (body, head) or None for the full forward
    share_prompts: bool = False  # a pair's prompt once per row (preference_reference.collate_sides)
    _sums: dict[str, float] = field(default_factory=dict)
    _rows: int = 0

    def collate(self, examples, pad_id: int) -> dict:
        from tunery.tasks.preference_reference import collate_sides

        return collate_sides(examples, self.share_prompts)

    def count(self, examples) -> int:
        return len(examples)

    def summed_loss(self, model, batch: dict):
        from tunery.nn.preference_loss import sequence_logps

        logps, counts = sequence_logps(model, self.parts, batch)
        terms = self.terms(logps, counts, batch)
        self._record(terms, logps, batch)
        return terms.losses.sum(), len(terms.losses)

    def terms(self, logps, counts, batch: dict):
        """The configured loss over one batch's sequence log-probs."""
        from tunery.nn import preference_loss as losses

        s, reference = self.settings, batch["reference"].to(logps.dtype)
        if s.loss == "kto":
            return losses.kto_loss(logps, reference, batch["desirable"], s.beta,
                                   s.kto_desirable_weight, s.kto_undesirable_weight)  # fmt: skip
        pc, pr = logps[0::2], logps[1::2]
        if s.loss in ("dpo", "ipo"):
            rc, rr = reference[0::2], reference[1::2]
            if s.loss == "dpo":
                return losses.dpo_loss(pc, pr, rc, rr, s.beta, s.label_smoothing)
            return losses.ipo_loss(pc, pr, rc, rr, s.beta)
        mean_c, mean_r = pc / counts[0::2], pr / counts[1::2]
        if s.loss == "simpo":
            return losses.simpo_loss(mean_c, mean_r, s.beta, s.simpo_gamma)
        return losses.orpo_loss(mean_c, mean_r, s.beta, s.orpo_lambda)

    def _record(self, terms, logps, batch: dict) -> None:
        add = lambda name, value: self._sums.__setitem__(name, self._sums.get(name, 0.0) + float(value))  # noqa: E731
        if terms.rejected_rewards is None:  # KTO: a row is right when its reward's sign matches its label
            desirable = batch["desirable"]
            add("reward_accuracy", ((terms.chosen_rewards > 0) == desirable).sum())
            add("reward_mean", terms.chosen_rewards.sum())
            add("logps", logps.detach().sum())
        else:
            margin = terms.chosen_rewards - terms.rejected_rewards
            add("reward_accuracy", (margin > 0).sum())
            add("reward_margin", margin.sum())
            add("logps_chosen", logps[0::2].detach().sum())
            add("logps_rejected", logps[1::2].detach().sum())
        self._rows += len(terms.losses)

    def take_metrics(self) -> dict[str, float]:
        """Means over the rows seen since the last call, then reset (the loop logs them per step/evaluation)."""
        metrics = {name: round(total / max(self._rows, 1), 6) for name, total in self._sums.items()}
        self._sums, self._rows = {}, 0
        return metrics
