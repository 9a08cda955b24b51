"""EleutherAI's lm-evaluation-harness on a run: the tuned model and its base, same dtype and device.

    tunery eval runs/demo --harness demo_orders --harness-include tasks/
    harness_evaluate("runs/demo", ["demo_orders"], include=["tasks/"])  # -> runs/demo/eval/harness/

The harness (the [harness] extra) loads the base with HFLM and the run's adapter through its
`peft=` argument. Scores go to eval/<name>/metrics.json (so `tunery report` shows them) and
to run.json's metrics under `harness` (what the service's registry and the model card read);
the harness's own result files are kept beside them as <model>_results.json. Offline users
have no hub: `include` names local task YAML files or folders of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tunery.errors import TuneryError
from tunery.evaluate.results import eval_dir, save_evaluation
from tunery.files import write_atomic
from tunery.run import Run


class HarnessError(TuneryError):
    """The harness cannot run these tasks (unknown name, missing include folder); the message says which."""

    code = "invalid_harness_task"


def harness_evaluate(
    run_path: str | Path, tasks: list[str], include: Sequence[str | Path] = (), with_base: bool = True,
    limit: int | None = None, batch_size: int = 8, name: str = "harness", chat: bool = False,
    system: str | None = None,
) -> dict:  # fmt: skip
    """Run `tasks` on the tuned model (and the base); returns the stored summary.

    `chat` renders each request with the model's chat template (lm-eval's `apply_chat_template`),
    as a chat-tuned run is used; `system` is the system turn put before each request.
    """
    from tunery.libraries import require_extra

    require_extra("harness", "tunery eval --harness")
    run = Run.open(run_path)
    manager = task_manager(tasks, include)
    models = [("tuned", str(run.adapter_dir))] + ([("base", None)] if with_base else [])
    folder = eval_dir(run.path, name)
    scores, settings = {}, harness_settings(run) | {"chat_template": chat, "system": system}
    for label, adapter in models:
        results = run_harness(run, settings, adapter, tasks, manager, limit, batch_size)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{label}_results.json", json.dumps(results, indent=2, default=str))
        scores[label] = flat_scores(results)
    summary = {
        "data": f"lm-eval: {', '.join(tasks)}", "examples": limit, "kind": "harness",
        "tuned": scores["tuned"], "base": scores.get("base"), "harness": settings | {"tasks": tasks},
    }  # fmt: skip
    save_evaluation(run.path, name, summary, [])
    run.update_record(metrics=run.metrics | {"harness": scores})
    return summary


def task_manager(tasks: list[str], include: Sequence[str | Path]):
    """lm-eval's task index with the local YAMLs; an unknown task is refused before any model loads."""
    from lm_eval.tasks import TaskManager

    paths = [Path(p) for p in include]
    for path in paths:
        if not path.exists():
            raise HarnessError(f"--harness-include {path}: no such file or folder")
    manager = TaskManager(include_path=[str(p) for p in paths] or None)
    unknown = [task for task in tasks if task not in manager.all_tasks]
    if unknown:
        where = f" in {', '.join(map(str, paths))} or" if paths else ""
        raise HarnessError(
            f"--harness: unknown task(s) {', '.join(unknown)}: not found{where} in lm-eval's own tasks "
            "(offline, point --harness-include at a folder of task YAMLs)"
        )
    return manager


def harness_settings(run: Run) -> dict:
    """The base model, device and dtype as tunery picks them for this run."""
    from tunery.models import pick_device, pick_dtype, resolve_model

    cfg = run.config
    device = pick_device(cfg.model.device)
    dtype = str(pick_dtype(cfg.model.dtype, device)).removeprefix("torch.")
    model_path = run.record.get("model_path") or resolve_model(cfg.model.name)
    return {"model_path": str(model_path), "device": str(device), "dtype": dtype}


def run_harness(run: Run, settings: dict, adapter: str | None, tasks, manager, limit, batch_size) -> dict:
    """One `lm_eval.simple_evaluate` over HFLM (the base, with the adapter when given); its JSON-able results."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from tunery.models import model_construction

    with model_construction():  # HFLM loads the base and the adapter with from_pretrained
        model = HFLM(
            pretrained=settings["model_path"], tokenizer=str(run.adapter_dir), peft=adapter,
            device=settings["device"], dtype=settings["dtype"], batch_size=batch_size,
        )  # fmt: skip
    results = lm_eval.simple_evaluate(
        model=model, tasks=list(tasks), task_manager=manager, limit=limit, log_samples=False,
        random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
        apply_chat_template=settings["chat_template"], system_instruction=settings["system"],
    )  # fmt: skip
    if results is None:
        raise HarnessError("lm-eval returned no results")
    return json.loads(json.dumps(dict(results), default=str))


def flat_scores(results: dict) -> dict[str, float]:
    """`task/metric` -> value for each numeric score (standard errors aside), as the report lists them."""
    scores = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric = key.split(",")[0]  # lm-eval names them "acc,none": metric, filter
            if isinstance(value, int | float) and not isinstance(value, bool) and "stderr" not in metric:
                scores[f"{task}/{metric}"] = float(value)
    return scores
