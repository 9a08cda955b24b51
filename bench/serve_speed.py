"""Serving many adapters: tunery's engine against transformers + PEFT one request at a time.

    .venv/bin/python bench/serve_speed.py                      # 8 adapters, 16 clients, 4 requests each
    .venv/bin/python bench/serve_speed.py --clients 16 --requests 2 --max-tokens 16

Both systems serve SmolLM2-135M-Instruct with the same 8 LoRA adapters (made here: one short
training step each, different seeds, so each adapter answers differently) to the same clients:
threads that each send chat requests, one after another, to a random adapter (seeded), greedy,
the same `max_tokens`. The baseline holds one PeftModel with every adapter loaded and serves the
queue one request at a time, switching with `set_adapter`; tunery's engine batches concurrent
requests for different adapters into one forward pass. Printed: completed requests/s, p50/p95
latency, the weights each system keeps in memory against 8 merged copies, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
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
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "wall_s": wall,
    }


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

    result = drive(serve_one, plan)
    slot = engine.slot(targets[0])
    result["weights_bytes"] = tensor_bytes(p for p in slot.model.parameters())
    result["mean_batch"] = statistics.mean(engine.batch_sizes) if engine.batch_sizes else 1
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
    one_at_a_time = threading.Lock()

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
    result["weights_bytes"] = tensor_bytes(model.parameters())
    result["mean_batch"] = 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4, help="per client")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from tunery.cli import quiet_libraries
    from tunery.models import resolve_model, set_threads

    quiet_libraries()
    set_threads(None)
    with tempfile.TemporaryDirectory() as folder:
        runs = make_adapters(args.adapters, Path(folder))
        conversations = prompts(40)
        plan = workload(args.clients, args.requests, args.adapters, args.seed)
        results = {
            "baseline": run_baseline(runs, conversations, plan, args.max_tokens),
            "tunery": run_engine(runs, conversations, plan, args.max_tokens),
        }
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
        f"SmolLM2-135M-Instruct, {args.adapters} LoRA adapters, {args.clients} clients x {args.requests} requests, "
        f"max_tokens {args.max_tokens}, greedy"
    )
    print(f"{'system':<10} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'mean batch':>10} {'weights MB':>11}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['requests_per_s']:>7.2f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} "
            f"{r['mean_batch']:>10.1f} {r['weights_bytes'] / 2**20:>11.1f}"
        )
    t, b = results["tunery"], results["baseline"]
    merged = args.adapters * base_bytes
    print(
        f"tunery / baseline: {t['requests_per_s'] / b['requests_per_s']:.2f}x requests/s, "
        f"p95 {t['p95_s'] / b['p95_s']:.2f}x; weights {t['weights_bytes'] / base_bytes:.3f}x the base model "
        f"({t['weights_bytes'] / merged:.3f}x of {args.adapters} merged copies, {merged / 2**20:.0f} MB)"
    )


if __name__ == "__main__":
    main()
