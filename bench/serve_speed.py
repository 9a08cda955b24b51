"""Serving many adapters: tunery's engine against transformers + PEFT one request at a time.

    make bench-serve                                           # = the first line
    .venv/bin/python bench/serve_speed.py                      # 8 adapters, 16 clients, 4 requests each
    .venv/bin/python bench/serve_speed.py --clients 16 --requests 2 --max-tokens 16 --rounds 2

Both systems serve SmolLM2-135M-Instruct with the same 8 LoRA adapters (made here: one short
training step each, different seeds, so each adapter answers differently) to the same clients:
threads that each send chat requests, one after another, to a random adapter (seeded), greedy,
the same `max_tokens`. The baseline holds one PeftModel with every adapter loaded and serves the
queue one request at a time in arrival order, switching with `set_adapter`; tunery's engine batches continuously
(requests join and leave the running batch between decode steps) with grouped LoRA.
Each system runs in a process of its own, alternating baseline and tunery `--rounds` times.
Printed: completed requests/s, p50/p95 latency, the mean rows per forward pass, the bytes of
parameters and buffers each system keeps (against one base and 8 merged copies), the process's
resident memory (RSS) after serving, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"


def make_adapters(n: int, folder: Path) -> list[Path]:
    import tunery

    runs = []
    for i in range(n):
        run = tunery.train(
            ROOT / "examples" / "demo.yaml",
            overrides=[
                f"output_dir={folder}", f"run_name=adapter-{i}", "train.max_steps=1", "train.batch_size=2",
                "train.lr=0.02", f"train.seed={i}", "train.eval_every=1000", "train.save_every=1000",
                "data.validation=null", "data.validation_split=0", "lora.r=8",
            ],
            quiet=True,
        )  # fmt: skip
        runs.append(run.path)
    return runs


def prompts(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (DATA / "valid.jsonl").read_text().splitlines()]
    return [row["messages"][:-1] for row in rows][:n]


def workload(clients: int, requests: int, adapters: int, seed: int) -> list[list[tuple[int, int]]]:
    """Per client, its (adapter index, prompt index) requests in order."""
    rng = random.Random(seed)
    return [[(rng.randrange(adapters), rng.randrange(40)) for _ in range(requests)] for _ in range(clients)]


def drive(serve_one, plan: list[list[tuple[int, int]]]) -> dict:
    """Run every client as a thread; `serve_one(adapter, prompt)` blocks until its answer is done."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(requests: list[tuple[int, int]]) -> None:
        for adapter, prompt in requests:
            started = time.perf_counter()
            serve_one(adapter, prompt)
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(requests,)) for requests in plan]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "wall_s": wall, "latencies": latencies}


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def run_engine(runs: list[Path], conversations, plan, max_tokens: int) -> dict:
    from tunery.serve.engine import Engine, Finish, Sampling, Target

    engine = Engine(max_adapters=len(runs), max_batch=32).start()
    targets = [Target.for_run(run) for run in runs]
    encoded = [engine.encode_chat(targets[0], messages) for messages in conversations]
    sampling = Sampling(max_tokens=max_tokens, temperature=0)
    for target in targets:  # load every adapter before the clock starts, as a warm server would have
        list(engine.submit(target, encoded[0], Sampling(max_tokens=1, temperature=0)).events())

    def serve_one(adapter: int, prompt: int) -> None:
        events = list(engine.submit(targets[adapter], encoded[prompt], sampling).events())
        assert isinstance(events[-1], Finish), events[-1]

    engine.batch_sizes.clear()
    result = drive(serve_one, plan)
    slot = engine.slot(targets[0])
    model = slot.model
    result["prefix_hit_tokens"] = slot.batch.prefixes.hits if slot.batch.prefixes else 0
    result["prompt_tokens"] = sum(len(encoded[prompt]) for requests in plan for _, prompt in requests)
    result["weights_bytes"] = tensor_bytes([*model.parameters(), *model.buffers()])
    result["mean_batch"] = statistics.mean(engine.batch_sizes)
    result["rss_bytes"] = rss_bytes()
    engine.stop()
    return result


def run_baseline(runs: list[Path], conversations, plan, max_tokens: int) -> dict:
    import torch
    from peft import PeftModel

    from tunery.models import load_causal_lm, load_tokenizer, resolve_model

    base, _ = load_causal_lm(resolve_model("smollm2-135m-instruct"), torch.device("cpu"), torch.float32)
    tokenizer = load_tokenizer(str(runs[0] / "adapter"))
    model = PeftModel.from_pretrained(base, runs[0] / "adapter", adapter_name="a0")
    for i, run in enumerate(runs[1:], start=1):
        model.load_adapter(run / "adapter", adapter_name=f"a{i}")
    model.eval()
    encoded = [
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        for messages in conversations
    ]
    one_at_a_time = FirstComeFirstServed()
    for i in range(len(runs)):  # the same warm-up as the engine's: one token from every adapter
        model.set_adapter(f"a{i}")
        with torch.no_grad():
            model.generate(
                **encoded[0], max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )

    def serve_one(adapter: int, prompt: int) -> None:
        with one_at_a_time, torch.no_grad():
            model.set_adapter(f"a{adapter}")
            model.generate(
                **encoded[prompt],
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )

    result = drive(serve_one, plan)
    result["weights_bytes"] = tensor_bytes([*model.parameters(), *model.buffers()])
    result["mean_batch"] = 1
    result["rss_bytes"] = rss_bytes()
    return result


class FirstComeFirstServed:
    """One request at a time, in arrival order, as a server's queue would serve them (a plain
    threading.Lock lets the thread that just released it win again, which skews the latencies)."""

    def __init__(self):
        self._turn = threading.Condition()
        self._next_ticket = self._serving = 0

    def __enter__(self):
        with self._turn:
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            self._turn.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc):
        with self._turn:
            self._serving += 1
            self._turn.notify_all()


def rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_system(name: str, runs: list[Path], plan, max_tokens: int) -> dict:
    """One system in this (fresh) process: its weights and memory are its own."""
    from tunery.libraries import quiet_libraries
    from tunery.models import set_threads

    quiet_libraries()
    set_threads(None)
    serve = run_baseline if name == "baseline" else run_engine
    return serve(runs, prompts(40), plan, max_tokens)


def merge_rounds(rounds: list[dict]) -> dict:
    """Requests/s over all rounds' requests and time; latencies pooled; memory of the last round."""
    latencies = sorted(latency for r in rounds for latency in r.pop("latencies"))
    merged = {**rounds[-1], "requests": len(latencies), "wall_s": sum(r["wall_s"] for r in rounds)}
    merged["requests_per_s"] = merged["requests"] / merged["wall_s"]
    merged["p50_s"], merged["p95_s"] = percentile(latencies, 0.5), percentile(latencies, 0.95)
    merged["mean_batch"] = statistics.mean(r["mean_batch"] for r in rounds)
    return merged


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="per client")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=1, help="baseline, tunery, baseline, tunery, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from tunery.libraries import quiet_libraries
    from tunery.models import resolve_model

    quiet_libraries()
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        runs = make_adapters(args.adapters, Path(folder))
        plan = workload(args.clients, args.requests, args.adapters, args.seed)
        rounds: dict[str, list[dict]] = {"baseline": [], "tunery": []}
        for _ in range(args.rounds):
            for name, done in rounds.items():
                with spawn.Pool(1) as pool:
                    done.append(pool.apply(run_system, (name, runs, plan, args.max_tokens)))
        results = {name: merge_rounds(done) for name, done in rounds.items()}
    base_bytes = tensor_bytes_of_base(resolve_model("smollm2-135m-instruct"))
    print_table(results, base_bytes, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def tensor_bytes_of_base(path: str) -> int:
    """Bytes of one copy of the base weights (fp32), read from its safetensors headers."""
    from math import prod

    from safetensors import safe_open

    total = 0
    for file in Path(path).glob("*.safetensors"):
        with safe_open(file, "pt") as handle:
            total += sum(prod(handle.get_slice(name).get_shape()) * 4 for name in handle.keys())  # noqa: SIM118
    return total


def print_table(results: dict, base_bytes: int, args) -> None:
    print(
        f"SmolLM2-135M-Instruct, {args.adapters} LoRA adapters, {args.clients} clients x {args.requests} requests "
        f"x {args.rounds} round(s), max_tokens {args.max_tokens}, greedy"
    )
    print(
        f"{'system':<10} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'mean batch':>10} {'weights MB':>11} {'RSS MB':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<10} {r['requests_per_s']:>7.2f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} "
            f"{r['mean_batch']:>10.1f} {r['weights_bytes'] / 2**20:>11.1f} {r['rss_bytes'] / 2**20:>8.0f}"
        )
    t, b = results["tunery"], results["baseline"]
    merged = args.adapters * base_bytes
    print(
        f"tunery / baseline: {t['requests_per_s'] / b['requests_per_s']:.2f}x requests/s, "
        f"p50 {t['p50_s'] / b['p50_s']:.2f}x, p95 {t['p95_s'] / b['p95_s']:.2f}x, RSS {t['rss_bytes'] / b['rss_bytes']:.2f}x"
    )
    print(
        f"tunery's prefix cache: {t['prefix_hit_tokens']} of {t['prompt_tokens']} prompt tokens not prefilled "
        "(shared starts of earlier prompts, per adapter)"
    )
    print(
        f"weights (parameters + buffers): tunery {t['weights_bytes'] / base_bytes:.3f}x the base model "
        f"({base_bytes / 2**20:.0f} MB), {t['weights_bytes'] / merged:.3f}x of {args.adapters} merged copies "
        f"({merged / 2**20:.0f} MB); baseline {b['weights_bytes'] / base_bytes:.3f}x the base"
    )


if __name__ == "__main__":
    main()
