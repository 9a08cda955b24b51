"""One typed config for a fine-tuning run, validated at the edge.

The same schema serves the YAML file, `--set key=value` overrides, the Python
API and the REST API. Errors name the key and suggest the nearest valid
one. This module imports no torch, so the CLI starts fast.

    cfg = load_config("examples/demo.yaml", overrides=["lora.r=16", "train.epochs=2"])
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunery.config.registry import (
    METHOD_NAMES,
    TASK_NAMES,
    TASK_SPECS,
    batching_for,
    batching_refusal,
    method_spec,
    task_spec,
)
from tunery.errors import TuneryError

# Every method and task name the config accepts: the registry's, never a second list.
Method = Literal[METHOD_NAMES]  # type: ignore[valid-type]
Task = Literal[TASK_NAMES]  # type: ignore[valid-type]
Auto = Literal["auto"]
# train.lr: auto picks each run's peak learning rate with a range test (training/auto.py, docs/auto.md),
# inside its method family's safe range. A family's default is the fallback (a run too short to test, several
# processes) and what the API's learning_rate_multiplier scales. 2e-4, the fixed default before, is tuned for
# 7B models and long runs; on small models and short runs it leaves most of the gain on the table.
LR_FAMILIES: dict[str, tuple[float, float, float]] = {  # family: (default, lowest, highest) peak lr
    "lora": (1e-3, 1e-4, 5e-3),  # lora, dora, qlora, adalora, loha, lokr, oft
    "ia3": (1e-2, 1e-3, 5e-2),
    "prompt": (1e-2, 1e-3, 1e-1),  # prefix, prompt, ptuning, llama_adapter
    "full": (5e-5, 5e-6, 3e-4),  # full, freeze, progressive: the model's own weights
}
DEFAULT_LR = LR_FAMILIES["lora"][0]  # the default method's fallback learning rate


def lr_family(method: str) -> str:
    """The method family whose learning-rate range applies: lora, ia3, prompt or full."""
    spec = method_spec(method)
    if spec.prompt_based:
        return "prompt"
    if spec.own_weights:
        return "full"
    return "ia3" if method == "ia3" else "lora"


def default_lr(method: str) -> float:
    """The family default learning rate of `method` (train.lr: auto falls back to it)."""
    return LR_FAMILIES[lr_family(method)][0]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field(
        "smollm2-135m-instruct",
        description="Bundled alias, local directory, .gguf file or hub id.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bf16 on a GPU that supports it, else fp32. bfloat16 on a CPU is allowed where it is "
        "native (AMX, avx512_bf16): faster, at some cost in loss (docs/benchmarks.md).",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps.")
    attn_implementation: str | None = Field(None, description="sdpa (default), eager, flash_attention_2.")
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with a hub model; only for models you trust."
    )


class DataConfig(_Section):
    train: str = Field(
        ...,
        description="Training file (JSONL, JSON, CSV, Parquet, datasets directory) or a registered "
        "dataset NAME@VERSION (NAME alone: the latest version; see `tunery data add`).",
    )
    validation: str | None = Field(
        None, description="Validation file; if absent, `validation_split` of train."
    )
    validation_split: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train held out when no file.")
    format: Literal["auto", "chat", "instruction", "completion", "text", "classification"] = "auto"
    max_length: int = Field(1024, ge=8, description="Tokens per example; longer ones are truncated.")
    train_on: Literal["assistant", "all"] = Field(
        "assistant", description="Loss on assistant/completion tokens only (default), or on every token."
    )
    strict_template: bool = Field(
        False,
        description="Stop before training when a chat row's inference prompt (add_generation_prompt) is not "
        "an exact token prefix of its training tokens, or a trained turn does not end with the end-of-turn "
        "token; false: a warning (docs/data.md, template round-trip check).",
    )


class LoraConfig(_Section):
    r: int = Field(8, ge=1, description="Rank of the update matrices.")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' (every linear layer but the head) or a list of module names."
    )
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha / sqrt(r), steadier at high ranks.")
    use_dora: bool = Field(False, description="DoRA: learn each weight's magnitude apart from its direction.")
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default",
        description="Initialisation of A and B; pissa and olora start from the weights' own SVD/QR.",
    )
    rank_pattern: dict[str, int] = Field(
        default_factory=dict, description="Per-module rank by name pattern, e.g. {'down_proj': 16}."
    )
    alpha_pattern: dict[str, float] = Field(
        default_factory=dict, description="Per-module alpha by name pattern."
    )
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full beside the adapter and saved with it, e.g. ['lm_head']."
    )


class QloraConfig(_Section):
    bits: Literal[4, 8] = Field(4, description="4: NF4/FP4 base weights; 8: LLM.int8 base weights.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; NF4 suits normal weights.")
    double_quant: bool = Field(
        True, description="Quantise the quantisation constants too (~0.4 bit/param saved)."
    )
    paged_optimizer: bool = Field(
        False, description="Paged 8-bit AdamW (CUDA only): optimiser state spills to CPU memory on spikes."
    )


class AdaloraConfig(_Section):
    init_r: int = Field(12, ge=1, description="Starting rank; AdaLoRA prunes towards lora.r on average.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps before ranks are pruned.")
    final_ratio: float = Field(0.2, ge=0.0, lt=1.0, description="Share of steps at the end with ranks fixed.")


class PromptConfig(_Section):
    """Prompt-learning methods: prefix, prompt, ptuning, llama_adapter."""

    virtual_tokens: int = Field(16, ge=1, description="Learned tokens (prefix length / soft-prompt length).")
    init_text: str | None = Field(
        None, description="prompt method: start the soft prompt from this text's embeddings."
    )
    encoder_hidden_size: int = Field(128, ge=1, description="ptuning: hidden size of the prompt encoder MLP.")
    adapter_layers: int = Field(2, ge=1, description="llama_adapter: top layers that get adaption prompts.")


class FreezeConfig(_Section):
    """Which weights train in `freeze` and `progressive`; everything else stays frozen."""

    top_layers: int | None = Field(2, ge=0, description="Train the top N transformer layers.")
    modules: list[str] = Field(
        default_factory=list,
        description="Also train parameters whose name contains one of these, e.g. ['lm_head'].",
    )
    group_layers: int = Field(1, ge=1, description="progressive: layers unfrozen together as one group.")
    unfreeze_every: int = Field(
        10, ge=1, description="progressive: unfreeze the next group every K steps/epochs."
    )
    unit: Literal["steps", "epochs"] = Field("steps", description="progressive: what unfreeze_every counts.")
    lr_decay: float | None = Field(
        None, gt=0, le=1, description="progressive: each lower group's LR is the group above's times this."
    )


class ClassificationConfig(_Section):
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weigh each class's loss by n / (classes * count) against imbalance."
    )


class PreferenceConfig(_Section):
    """task=preference: the loss and its knobs (docs/preference.md)."""

    loss: Literal["dpo", "ipo", "orpo", "simpo", "kto"] = Field(
        "dpo",
        description="dpo, ipo and kto compare with the starting model (reference log-probs computed once); "
        "orpo and simpo need no reference; kto takes unpaired completions with a true/false label.",
    )
    beta: float = Field(
        0.1, gt=0, description="Strength of the preference: 0.1 is usual for dpo/ipo/kto/orpo, ~2 for simpo."
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5, description="dpo: share of pairs assumed mislabelled (conservative DPO)."
    )
    simpo_gamma: float = Field(0.5, ge=0.0, description="simpo: target reward margin.")
    orpo_lambda: float = Field(
        0.1, gt=0, description="orpo: weight of the odds-ratio term beside the SFT loss."
    )
    kto_desirable_weight: float = Field(1.0, gt=0, description="kto: loss weight of desirable rows.")
    kto_undesirable_weight: float = Field(1.0, gt=0, description="kto: loss weight of undesirable rows.")
    init_from: str | None = Field(
        None,
        description="Start from a finished run (e.g. runs/<sft>): its adapter is merged into the base and "
        "that model is also the reference; same as model.name: runs/<sft>.",
    )


class TrainConfig(_Section):
    epochs: Annotated[float, Field(gt=0)] | Auto = Field(
        "auto",
        description="Passes over the training data (fractions allowed); auto: more for small sets, one for "
        "large ones, with validation-loss early stopping and load_best (docs/auto.md).",
    )
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps.")
    batch_size: Annotated[int, Field(ge=1)] | Auto = Field(
        "auto",
        description="Examples per micro-batch; auto: from the tokens per step and the memory the device has "
        "(docs/auto.md).",
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    batching: Literal["auto", "grouped", "packed"] = Field(
        "auto",
        description="packed: a batch's examples end to end with no padding, each attending to itself; "
        "grouped: batches of similar length padded to the longest; auto: packed where the task and "
        "method allow it (causal-LM SFT with weight-space methods), else grouped.",
    )
    max_batch_tokens: int | None = Field(
        1024,
        ge=1,
        description="Split a micro-batch into forward passes of at most this many tokens (padding "
        "included); gradients add up to the same step. Bounds activation memory (~4 MB/token for "
        "SmolLM2 LoRA in fp32) at no cost in speed once a pass fills the matrix units. None: no split.",
    )
    lr: Annotated[float, Field(gt=0)] | Auto = Field(
        "auto",
        description="Peak learning rate; auto: a short learning-rate range test before training picks it "
        "(docs/auto.md).",
    )
    scheduler: Literal["linear", "cosine", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = Field(42, ge=0, le=2**31 - 1)
    eval_every: int | None = Field(
        None, ge=1, description="Evaluate every N steps (default: each epoch end)."
    )
    save_every: int | None = Field(
        None, ge=1, description="Checkpoint every N steps (default: each epoch end)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Newest complete checkpoints kept on disk.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop when validation loss has not improved for this many evaluations."
    )
    overfitting_patience: int = Field(
        2,
        ge=1,
        description="Warn when validation loss rose this many evaluations in a row as training loss fell.",
    )
    load_best: bool = Field(
        False, description="Keep the adapter of the lowest validation loss as the final one, not the last."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory; off unless needed.")
    fused_lora: bool = Field(
        True,
        description="Plain LoRA layers train through one fused autograd node (same maths, faster); "
        "false: PEFT's own forward.",
    )
    log_every: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1, description="CPU threads (default: the cores available).")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="Experiment trackers that also get the metrics, config, dataset hashes and adapter "
        "(the [tracking] extra; docs/tracking.md).",
    )
    tracking_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags every tracker gets, e.g. {'team': 'search'}; jobs add their id.",
    )

    @field_validator("report_to")
    @classmethod
    def _each_tracker_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class MlflowConfig(_Section):
    """train.report_to: [mlflow]; docs/tracking.md."""

    tracking_uri: str | None = Field(
        None,
        description="http(s)://host:port of an MLflow server, or a file/sqlite URI; default MLFLOW_TRACKING_URI, "
        "else ./mlruns.",
    )
    experiment: str = Field("tunery", min_length=1, description="Experiment the run is logged under.")
    # `register` is the key; the attribute has a trailing _ because BaseModel's metaclass has a register().
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, validate_by_name=True, validate_by_alias=True,
        serialize_by_alias=True,
    )  # fmt: skip
    register_: bool = Field(
        False,
        alias="register",
        description="Register the adapter in the model registry, its lineage as version tags.",
    )
    registered_model: str | None = Field(None, description="Registered model name (default: the experiment).")


class WandbConfig(_Section):
    """train.report_to: [wandb]; WANDB_MODE=offline writes the run to disk for a later `wandb sync`."""

    project: str = Field("tunery", min_length=1)
    entity: str | None = Field(None, description="W&B team or user (default: the API key's).")
    name: str | None = Field(None, description="Run name in W&B (default: the tunery run's name).")


class DistributedConfig(_Section):
    """How one run spreads over several processes (`tunery train --nproc-per-node N`); docs/deploy.md."""

    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto",
        description="auto: ddp when launched on more than one process. ddp: every rank holds the model and "
        "gradients are summed; fsdp: weights, gradients and optimizer state sharded per decoder layer "
        "(PyTorch FSDP2); deepspeed: DeepSpeed ZeRO under tunery's own loop (the [deepspeed] extra).",
    )
    zero_stage: Literal[1, 2, 3] = Field(
        2,
        description="deepspeed: ZeRO-1 shards the optimizer state, ZeRO-2 the gradients too, ZeRO-3 the "
        "weights too.",
    )
    offload: bool = Field(
        False,
        description="fsdp: keep sharded parameters and optimizer state in CPU memory; deepspeed: the optimizer "
        "state (and at zero_stage 3 the parameters).",
    )
    wrap: list[str] | None = Field(
        None,
        description="fsdp: module classes sharded as one unit; default: the model's decoder layer class.",
    )
    backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="Process-group backend; auto: nccl on CUDA, gloo on CPU."
    )


class TuneryConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    task: Task = Field(
        "sft", description="; ".join(f"{spec.name}: {spec.summary}" for spec in TASK_SPECS) + "."
    )
    method: Method = Field("lora", description="Fine-tuning method; `tunery methods` lists them.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    qlora: QloraConfig = Field(default_factory=QloraConfig)
    adalora: AdaloraConfig = Field(default_factory=AdaloraConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    classification: ClassificationConfig = Field(default_factory=ClassificationConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    output_dir: str = Field("runs", description="Runs are written to output_dir/run_name.")
    run_name: str | None = Field(None, description="Default: <model>-<method>-<timestamp>.")

    @field_validator("model", mode="before")
    @classmethod
    def _model_may_be_a_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def batching(self) -> Literal["grouped", "packed"]:
        """train.batching with auto resolved for this task and method (config/registry.py's rule)."""
        return batching_for(self.train.batching, self.task, self.method)

    @model_validator(mode="after")
    def _method_fits_task(self) -> TuneryConfig:
        refusal = batching_refusal(self.train.batching, self.task, self.method)
        if refusal:
            raise ValueError(refusal)
        if method_spec(self.method).decoder_only and not task_spec(self.task).causal_lm:
            raise ValueError(f"method={self.method} works only for task=sft (decoder models)")
        return self


# Names other fine-tuning tools use for our keys, so a migrating user is pointed to ours.
ALIASES = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "micro_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "scheduler",
    "lr_scheduler": "scheduler",
    "warmup": "warmup_ratio",
    "rank": "r",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "cutoff_len": "max_length",
    "sequence_len": "max_length",
    "max_seq_length": "max_length",
}


class ConfigError(TuneryError, ValueError):
    """A config the user wrote is wrong; the message says which key and what to do."""

    code = "invalid_config"


def load_config(
    source: str | Path | dict[str, Any] | TuneryConfig, overrides: list[str] | None = None
) -> TuneryConfig:
    """Read a YAML path, a dict or a config, apply `key.sub=value` overrides, validate."""
    if isinstance(source, TuneryConfig):
        raw = source.model_dump()
    elif isinstance(source, dict):
        raw = dict(source)
    else:
        raw = _read_yaml(Path(source))
    for item in overrides or []:
        _apply_override(raw, item)
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> TuneryConfig:
    try:
        return TuneryConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections (model, data, lora, train)")
    _resolve_paths(raw, path.parent)
    return raw


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Data paths in a config file are relative to the file, as a person reading it expects."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for key in ("train", "validation"):
        value = data.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
            data[key] = str(base / value)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value, e.g. lora.r=16")
    dotted, text = item.split("=", 1)
    keys = dotted.strip().split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{key}' is a value, not a section")
    node[keys[-1]] = yaml.safe_load(text) if text.strip() else None


# A number-or-auto field's union error: pydantic reports each member; one line is said instead.
_AUTO_MEMBER, _NUMBER_MEMBER = "literal['auto']", re.compile(r"(constrained-)?(float|int)")


def _without_auto_members(problems: list[Any]) -> list[tuple[list[str], Any, bool]]:
    """(loc, problem, or_auto) per problem: the `'auto'` member's complaint dropped, the number's kept."""
    kept = []
    for problem in problems:
        loc = [str(part) for part in problem["loc"]]
        if loc and loc[-1] == _AUTO_MEMBER:
            continue
        or_auto = bool(loc) and _NUMBER_MEMBER.fullmatch(loc[-1]) is not None
        kept.append((loc[:-1] if or_auto else loc, problem, or_auto))
    return kept


def _explain(err: ValidationError) -> str:
    lines = []
    for loc, problem, or_auto in _without_auto_members(err.errors()):
        key = ".".join(loc)
        if not loc:  # a check across sections (model_validator): its message says it all
            lines.append(problem["msg"].removeprefix("Value error, "))
        elif problem["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'{_suggestion(loc)}")
        elif problem["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            also = "; or auto" if or_auto else ""
            lines.append(f"'{key}': {problem['msg']} (got {problem.get('input')!r}){also}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _suggestion(loc: list[str]) -> str:
    section: type[BaseModel] = TuneryConfig
    for part in loc[:-1]:
        field = section.model_fields.get(part)
        annotation = getattr(field, "annotation", None) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    fields = list(section.model_fields)
    known = {name: name for name in fields} | {
        alias: name for alias, name in ALIASES.items() if name in fields
    }
    close = difflib.get_close_matches(loc[-1], list(known), n=1, cutoff=0.6)
    if not close:
        return f"; valid keys: {', '.join(fields)}"
    return f"; did you mean '{'.'.join([*loc[:-1], known[close[0]]])}'?"
