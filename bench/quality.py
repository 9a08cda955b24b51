"""Do tunery's defaults win? Held-out exact match, all-auto against a fixed learning-rate grid (#23).

    make bench-quality                          # 3 tasks x (auto + 5 fixed lrs), 450 rows, 1 epoch: ~45 min, 2 idle cores
    .venv/bin/python bench/quality.py --tasks package --rows 60 --epochs 3 --grid 2e-4 1e-3 --threads 1  # smoke

The rows come from the installed packages, so results compare on the same environment only.

Three tasks are built, deterministically, from files that ship with this machine's Python and
packages (nothing downloaded, none of it the demo's orders):

- `package`: an installed module's file name and docstring line -> its top-level package
  (`lowrank.py: Implement various linear algebra algorithms for low rank matrices.` -> `torch`),
  a classification over the 10 packages with the most documented modules, 52 rows each;
- `requires`: a sentence about one `Requires-Dist` line of an installed distribution's METADATA ->
  compact JSON `{"package", "requires", "version", "extra"}` (another schema than the demo's);
- `returns`: a standard-library function from mypy's bundled typeshed stubs -> its return type
  (`In module shlex, what does quote(s) return?` -> `str`), a short answer.

For each task: tunery's defaults (train.lr, train.epochs and train.batch_size all `auto`), then a
fixed-lr grid (1e-4 ... 2e-3) at the epochs, batch size and early stopping auto chose, all on the
same seed, on SmolLM2-135M-Instruct with LoRA r8 on all linear layers. Printed: exact match on the
held-out rows, wall and training time, the values used; then the issue's goals as met / NOT met.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3)
OLD_DEFAULT = 2e-4  # the fixed default before train.lr: auto
MODEL = "smollm2-135m-instruct"
HELD_OUT = 60
SEED = 42


def stable(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def chat(system: str, user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}  # fmt: skip


# --- the tasks --------------------------------------------------------------------------------


DOCSTRING = re.compile(r"\A(?:\s*#[^\n]*\n|\s*\n)*\s*[rRuU]?(\"\"\"|\'\'\')\s*([^\n]*)")


def package_rows(per_package: int = 52, packages: int = 10) -> list[dict]:
    """Modules of the installed packages with the most documented modules, `per_package` each."""
    site = Path(sysconfig.get_paths()["purelib"])
    by_package: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(site.glob("*/**/*.py")):
        package = path.relative_to(site).parts[0]
        if path.name == "__init__.py" or "." in package or package.startswith("_") or package == "google":
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            found = DOCSTRING.match(handle.read(1500))  # the module docstring's first line, without parsing
        line = found.group(2).strip().strip("\"'").strip() if found else ""
        if 15 <= len(line) <= 120:
            by_package.setdefault(package, []).append((path.name, line))
    biggest = sorted(by_package, key=lambda p: (-len(by_package[p]), p))[:packages]
    system = "Name the Python package this module belongs to."
    rows = []
    for package in biggest:
        modules = sorted(by_package[package], key=lambda m: stable(m[0] + m[1]))[:per_package]
        rows += [chat(system, f"{name}: {line}", package) for name, line in modules]
    return rows


TEMPLATES = (
    "{pkg} depends on {dep}{spec}{extra}.",
    "To install {pkg} you also need {dep}{spec}{extra}.",
    "{dep}{spec} is a requirement of {pkg}{extra}.",
    "Our build of {pkg} pulls in {dep}{spec}{extra}.",
)


def requires_rows() -> list[dict]:
    """One row per Requires-Dist line of the installed distributions, in prose; the answer as JSON."""
    from importlib.metadata import distributions

    from packaging.requirements import InvalidRequirement, Requirement

    rows, seen = [], set()
    for dist in sorted(distributions(), key=lambda d: d.metadata["Name"].lower()):
        name = dist.metadata["Name"]
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", str(req.marker or ""))
            answer = {"package": name, "requires": req.name, "version": str(req.specifier) or "any",
                      "extra": extra.group(1) if extra else None}  # fmt: skip
            key = json.dumps(answer)
            if key in seen:
                continue
            seen.add(key)
            template = TEMPLATES[stable(key) % len(TEMPLATES)]
            sentence = template.format(
                pkg=name, dep=req.name, spec=f" ({answer['version']})" if req.specifier else "",
                extra=f" for its '{answer['extra']}' extra" if extra else "",
            )  # fmt: skip
            rows.append(chat("Extract the dependency as compact JSON.", sentence,
                             json.dumps(answer, separators=(",", ":"))))  # fmt: skip
    return rows


def returns_rows() -> list[dict]:
    """Module-level functions of typeshed's stdlib stubs whose return type is a plain name."""
    import mypy

    stubs = Path(mypy.__file__).parent / "typeshed" / "stdlib"
    system = "Answer with the return type only."
    rows, seen = [], set()
    for path in sorted(stubs.glob("*.pyi")):
        if path.stem.startswith("_"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or node.returns is None:
                continue
            answer = ast.unparse(node.returns)
            if not re.fullmatch(r"[A-Za-z_][\w.]*(\[[\w, .]+\])?", answer) or "Incomplete" in answer:
                continue
            params = ", ".join(a.arg for a in node.args.args[:4])
            question = f"In module {path.stem}, what does {node.name}({params}) return?"
            if question not in seen:
                seen.add(question)
                rows.append(chat(system, question, answer))
    return rows


TASKS = {"package": package_rows, "requires": requires_rows, "returns": returns_rows}


def split(rows: list[dict], n_train: int, n_held: int) -> tuple[list[dict], list[dict]]:
    """Held-out and train rows by a hash of each row: the same on every run and machine."""
    ordered = sorted(rows, key=lambda row: stable(json.dumps(row)))
    return ordered[n_held : n_held + n_train], ordered[:n_held]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# --- runs -------------------------------------------------------------------------------------


THREADS: dict = {}  # --threads: train.threads for every run (under contention 1 is far faster than 2)


def config(train_file: Path, out: Path, name: str, train: dict) -> dict:
    return {
        "model": MODEL,
        "data": {"train": str(train_file), "max_length": 128},
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"},
        "train": {"seed": SEED, "save_every": 100_000, "keep_checkpoints": 1, **THREADS, **train},
        "output_dir": str(out),
        "run_name": name,
    }


def exact_match(run_path: Path, held_out: list[dict]) -> float:
    from tunery.inference import generate, load_run_model

    model, tokenizer = load_run_model(run_path)
    conversations = [row["messages"][:-1] for row in held_out]
    answers = generate(model, tokenizer, conversations, max_new_tokens=48)
    hits = sum(a == row["messages"][-1]["content"].strip() for a, row in zip(answers, held_out, strict=True))
    return 100 * hits / len(held_out)


def warm_caches(train_file: Path, out: Path, task: str) -> None:
    """Tokenise the task's data and load the model once, untimed: the first run would pay for it alone."""
    from tunery.training.recipe import train as train_run

    train_run(
        config(train_file, out, f"{task}-warm-up", {"lr": GRID[0], "epochs": 1.0}), quiet=True, dry_run=True
    )


def one_run(train_file: Path, held_out: list[dict], out: Path, name: str, train: dict) -> dict:
    import tunery

    started = time.perf_counter()
    run = tunery.train(config(train_file, out, name, train), quiet=True)
    wall = time.perf_counter() - started
    record = run.record
    used = record["config"]["train"]
    lr_choice = next(
        (c for c in (record.get("auto") or {}).get("choices", []) if c["key"] == "train.lr"), None
    )
    return {
        "name": name, "lr": used["lr"], "epochs": used["epochs"], "batch_size": used["batch_size"],
        "steps": record["metrics"]["steps"], "stopped_early": record["metrics"]["stopped_early"],
        "exact_match": round(exact_match(run.path, held_out), 1), "wall_s": round(wall, 1),
        "train_s": record["metrics"]["train_seconds"],
        "lr_reason": lr_choice["reason"] if lr_choice else None,
        "tenth_of_min_lr": lr_choice["numbers"].get("tenth_of_min_lr") if lr_choice else None,
        "range_test_s": next((c["numbers"].get("test_seconds") for c in [lr_choice] if c), None),
        "resolved": (record.get("auto") or {}).get("resolved", {}),
    }  # fmt: skip


def bench_task(
    task: str, rows: int, grid: list[float], epochs: float | None, out: Path, other_rule: bool, held: int,
    earlier: dict[float, dict],
) -> list[dict]:  # fmt: skip
    train_rows, held_out = split(TASKS[task](), rows, held)
    train_file = write_jsonl(train_rows, out / f"{task}-train.jsonl")
    write_jsonl(held_out, out / f"{task}-held-out.jsonl")
    print(f"\n## {task}: {len(train_rows)} training rows, {len(held_out)} held out", flush=True)
    warm_caches(train_file, out, task)
    auto = one_run(train_file, held_out, out, f"{task}-auto", {} if epochs is None else {"epochs": epochs})
    print(f"auto: {auto['exact_match']}% exact match; {auto['lr_reason']}", flush=True)
    same = {k: v for k, v in auto["resolved"].items() if k != "lr"} | {"epochs": auto["epochs"],
                                                                          "batch_size": auto["batch_size"]}  # fmt: skip
    results = [auto]
    for lr in grid:
        if lr in earlier:  # --grid-from: a fixed-lr run does not depend on the auto rules
            reused = earlier[lr]
            if (reused["epochs"], reused["batch_size"]) != (auto["epochs"], auto["batch_size"]):
                raise SystemExit(
                    f"--grid-from: {task} lr {lr:g} ran other epochs or batch size than auto now"
                )
            results.append(reused | {"reused": True})
        else:
            results.append(one_run(train_file, held_out, out, f"{task}-lr{lr:g}", {**same, "lr": lr}))
        print(f"lr {lr:g}: {results[-1]['exact_match']}% exact match", flush=True)
    if other_rule and auto["tenth_of_min_lr"]:  # the rule not taken: a tenth of the minimum's lr
        lr = float(f"{auto['tenth_of_min_lr']:.3g}")
        results.append(one_run(train_file, held_out, out, f"{task}-tenth", {**same, "lr": lr}))
        print(f"a tenth of the minimum's lr, {lr:g}: {results[-1]['exact_match']}% exact match", flush=True)
    return results


# --- the table and the goals ------------------------------------------------------------------


def table(task: str, results: list[dict]) -> str:
    lines = [
        f"| {task} | lr | epochs | batch | steps | exact match % | wall s | train s |",
        "|---|" + "---:|" * 7,
    ]
    for r in results:
        label = {"auto": "auto (tunery defaults)", "tenth": "min-loss lr / 10 (as a fixed lr)"}.get(
            r["name"].rsplit("-", 1)[-1], "fixed lr (earlier run)" if r.get("reused") else "fixed lr"
        )
        lines.append(f"| {label} | {r['lr']:.3g} | {r['epochs']:g} | {r['batch_size']} | {r['steps']}"
                     f"{' (early stop)' if r['stopped_early'] else ''} | {r['exact_match']:.1f} | {r['wall_s']:.0f} "
                     f"| {r['train_s']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def goals(results: list[dict]) -> list[tuple[str, bool | None, str]]:
    """(goal, met: True/False, or None where it does not apply, the numbers) for one task."""
    auto, grid = results[0], [r for r in results[1:] if not r["name"].endswith("-tenth")]
    if not grid:
        return []
    best = max(grid, key=lambda r: r["exact_match"])
    old = next((r for r in grid if abs(r["lr"] - OLD_DEFAULT) < 1e-12), None)
    fixed_wall = sum(r["wall_s"] for r in grid) / len(grid)
    found = [("auto within 2 points of the best grid point", auto["exact_match"] >= best["exact_match"] - 2,
              f"{auto['exact_match']:.1f} vs {best['exact_match']:.1f} at lr {best['lr']:g}")]  # fmt: skip
    if old is not None:
        gap = best["exact_match"] - old["exact_match"]
        met = None if gap < 10 else auto["exact_match"] >= old["exact_match"] + 10
        found.append(("auto >= 10 points above fixed 2e-4 (where the grid shows such a gap)", met,
                      f"{auto['exact_match']:.1f} vs {old['exact_match']:.1f}; grid gap {gap:.1f}"))  # fmt: skip
    ratio = auto["wall_s"] / fixed_wall
    # On a busy machine the training loops themselves differ by more than the range test costs: the
    # set-up overhead (the range test and loading) beside a fixed run's training tells them apart.
    extra = (auto["wall_s"] - auto["train_s"]) - sum(r["wall_s"] - r["train_s"] for r in grid) / len(grid)
    fixed_train = sum(r["train_s"] for r in grid) / len(grid)
    found.append(("auto wall time <= 1.15x one fixed-lr run", ratio <= 1.15,
                  f"{auto['wall_s']:.0f} s vs {fixed_wall:.0f} s mean: {ratio:.2f}x; auto's extra set-up "
                  f"{extra:.0f} s = {extra / max(fixed_train, 1e-9):.0%} of a fixed run's training"))  # fmt: skip
    return found


def private_home(out: Path) -> None:
    """A TUNERY_HOME of this bench's own, so no range test answer is cached from an earlier run (its cost
    counts); the converted models are shared with the user's."""
    import os

    from tunery.models import tunery_home

    models = tunery_home() / "models"
    models.mkdir(parents=True, exist_ok=True)
    home = out / "home"
    home.mkdir(exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models, target_is_directory=True)
    os.environ["TUNERY_HOME"] = str(home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument(
        "--rows", type=int, default=450, help="training rows per task (default 450: one epoch)"
    )
    parser.add_argument("--grid", nargs="*", type=float, default=list(GRID), help="fixed learning rates")
    parser.add_argument("--epochs", type=float, help="epochs for every run (default: auto), for a smoke run")
    parser.add_argument("--held-out", type=int, default=HELD_OUT, help=f"held-out rows per task ({HELD_OUT})")
    parser.add_argument(
        "--other-rule", action="store_true", help="also train at the min-loss lr / 10 as a fixed lr"
    )
    parser.add_argument(
        "--grid-from",
        type=Path,
        help="an earlier run's results.json: reuse its fixed-lr runs (same settings)",
    )
    parser.add_argument("--threads", type=int, help="train.threads for every run (default: the cores)")
    parser.add_argument(
        "--out", type=Path, help="folder for the data, runs and results.json (default: a temp dir)"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="tunery-bench-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        THREADS["threads"] = args.threads
    private_home(out)
    print(f"# tunery bench-quality: {MODEL}, LoRA r8 all-linear, seed {SEED}; runs in {out}", flush=True)
    earlier = json.loads(args.grid_from.read_text()) if args.grid_from else {}
    everything = {
        task: bench_task(
            task,
            args.rows,
            args.grid,
            args.epochs,
            out,
            args.other_rule,
            args.held_out,
            {r["lr"]: r for r in earlier.get(task, []) if "-lr" in r["name"]},
        )  # fmt: skip
        for task in args.tasks
    }
    (out / "results.json").write_text(json.dumps(everything, indent=2), encoding="utf-8")
    all_met = True
    for task, results in everything.items():
        print("\n" + table(task, results))
        for goal, met, numbers in goals(results):
            verdict = "n/a (no such gap)" if met is None else "met" if met else "NOT met"
            all_met &= met is not False
            print(f"- {goal}: {verdict} ({numbers})")
    print(f"\n{'all goals met' if all_met else 'some goals NOT met'}; results in {out / 'results.json'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
