"""`tunery export` and `tunery push`: a run's model for use elsewhere.

tunery export runs/demo --merged out/merged      # safetensors model plain transformers loads
tunery export runs/demo --adapter out/adapter    # the PEFT adapter folder
tunery export runs/demo --gguf out/model.gguf --quant q8_0 --ollama   # llama.cpp / Ollama / LM Studio
tunery push runs/demo me/demo-model --dry-run    # lists what would go to the Hugging Face Hub
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tunery.errors import TuneryError

console = Console()


class PushFailed(TuneryError, RuntimeError):
    """The Hub could not be reached or refused the upload."""

    code = "push_failed"


def export(
    run: Annotated[str, typer.Argument(help="Run directory.")],
    merged: Annotated[Path | None, typer.Option(help="New folder for the merged model.")] = None,
    adapter: Annotated[Path | None, typer.Option(help="New folder for a copy of the PEFT adapter.")] = None,
    gguf: Annotated[Path | None, typer.Option(help="New .gguf file: the merged model for llama.cpp.")] = None,
    quant: Annotated[
        str, typer.Option(help="GGUF tensor type: f32, f16, q8_0, q5_1, q5_0, q4_1, q4_0.")
    ] = "f16",
    ollama: Annotated[
        bool, typer.Option(help="With --gguf: also write an Ollama Modelfile beside it.")
    ] = False,
) -> None:
    """Write the run's model as a merged model (--merged), its adapter folder (--adapter) and/or GGUF (--gguf)."""
    if merged is None and adapter is None and gguf is None:
        raise typer.BadParameter("give --merged OUT, --adapter OUT and/or --gguf OUT.gguf")
    if ollama and gguf is None:
        raise typer.BadParameter("--ollama writes a Modelfile for the GGUF file: give --gguf OUT.gguf too")
    if gguf is not None:
        export_gguf_file(run, gguf, quant, ollama)
    if adapter is not None:
        console.print(f"[bold green]adapter[/] {run} -> {copy_adapter(run, adapter)}")
    if merged is not None:
        from tunery.inference import merge_run

        console.print(f"[bold green]merged[/] {run} -> {merge_run(run, merged)}")


def export_gguf_file(run: str, out: Path, quant: str, ollama: bool) -> None:
    from tunery.gguf_export import check_target, export_gguf

    check_target(out, quant)  # a bad --quant or a taken name fails before the merge
    result = export_gguf(run, out, quant=quant, ollama=ollama)
    console.print(
        f"[bold green]gguf[/] {run} -> {result.path} ({result.architecture}, {quant}, {result.tensors} tensors)"
    )
    if result.fallbacks:
        console.print(
            f"  {len(result.fallbacks)} tensors kept in f16: their rows are shorter than a {quant} block"
        )
    if result.modelfile:
        console.print(f"  Ollama: ollama create NAME -f {result.modelfile}")


def copy_adapter(run_path: str | Path, out: Path) -> Path:
    from tunery.run import Run

    source = Run.open(run_path).adapter_dir
    if not source.is_dir():
        raise FileNotFoundError(f"{run_path} has no adapter folder yet")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    if out.exists():
        out.rmdir()
    shutil.copytree(source, out)
    return out


def push(
    run: Annotated[str, typer.Argument(help="Run directory.")],
    repo: Annotated[str, typer.Argument(help="Hub repository, e.g. me/my-model.")],
    dry_run: Annotated[bool, typer.Option(help="List what would be uploaded; upload nothing.")] = False,
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = True,
) -> None:
    """Upload the run's adapter with a generated model card (lineage, metrics, config) to the Hub."""
    from tunery.run import Run

    opened = Run.open(run)
    files = upload_files(opened)
    if dry_run:
        console.print(f"would upload to {repo}:")
        for name, size in files:
            console.print(f"  {name}  ({size} bytes)")
        console.print(f"  README.md  (generated model card, {len(model_card(opened, repo))} chars)")
        return
    upload(opened, repo, private)
    console.print(f"[bold green]pushed[/] {run} -> https://huggingface.co/{repo}")


def upload_files(run) -> list[tuple[str, int]]:
    adapter = run.adapter_dir
    if not adapter.is_dir():
        raise FileNotFoundError(f"{run.path} has no adapter folder yet")
    return sorted(
        (p.relative_to(adapter).as_posix(), p.stat().st_size) for p in adapter.rglob("*") if p.is_file()
    )


def model_card(run, repo: str) -> str:
    """A README.md with the Hub's metadata header: base model, lineage, metrics and the resolved config."""
    config, record = run.config, run.record
    config_text = (run.path / "config.yaml").read_text(encoding="utf-8")
    return (
        f"---\nbase_model: {config.model.name}\nlibrary_name: peft\ntags: [tunery, {config.method}]\n---\n\n"
        f"# {repo}\n\nFine-tuned with tunery ({config.method}) from `{config.model.name}`.\n\n"
        f"## Lineage\n\n```json\n{json.dumps({k: record.get(k) for k in ('data', 'versions')}, indent=2)}\n```\n\n"
        f"## Metrics\n\n```json\n{json.dumps(record.get('metrics', {}), indent=2)}\n```\n\n"
        f"## Config\n\n```yaml\n{config_text}```\n"
    )


def upload(run, repo: str, private: bool) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(run.adapter_dir), commit_message="tunery push")
        api.upload_file(
            path_or_fileobj=model_card(run, repo).encode(), path_in_repo="README.md", repo_id=repo
        )
    except Exception as err:  # offline, no token, no permission: one clear message
        raise PushFailed(
            f"could not push to the Hugging Face Hub ({type(err).__name__}: {str(err)[:200]}); check the "
            "network and `hf auth login`, or use --dry-run to see what would be uploaded"
        ) from None


COMMANDS = (export, push)
