"""DeepSpeed ZeRO-2 on one GPU: a few LoRA steps of the bundled SmolLM2 through tunery's own loop.

    python bench/gpu_check_deepspeed.py            # prints the losses and supervised tokens/s
    python bench/gpu_check_deepspeed.py --steps 20 --stage 3 --offload

The GPU half of `tests/distributed/test_deepspeed.py` (which runs ZeRO on CPU processes): the
engine on CUDA, bf16 when the model runs in bf16, and the loss falling. Without CUDA it says so in
one line and exits 0, so `make gpu-check` can call it anywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def gpu_check(steps: int = 8, stage: int = 2, offload: bool = False) -> dict | None:
    """Train `steps` steps under ZeRO-`stage` on GPU 0; returns the run's losses and speed (None: no GPU)."""
    import torch

    if not torch.cuda.is_available():
        print("gpu_check_deepspeed: skipped, torch.cuda.is_available() is False")
        return None
    import tunery

    with tempfile.TemporaryDirectory() as out:
        run = tunery.train(
            EXAMPLES / "demo.yaml",
            overrides=[
                f"train.max_steps={steps}", "train.batch_size=8", "train.lr=1e-3", "train.warmup_ratio=0",
                f"train.save_every={steps}", f"train.eval_every={steps}", "model.device=cuda",
                "distributed.strategy=deepspeed", f"distributed.zero_stage={stage}",
                f"distributed.offload={str(offload).lower()}", f"output_dir={out}", "run_name=gpu-check",
            ],
            quiet=True,
        )  # fmt: skip
        losses = [row["loss"] for row in run.history() if "loss" in row]
        result = {
            "zero_stage": stage,
            "offload": offload,
            "dtype": run.record["dtype"],
            "losses": losses,
            "tokens_per_s": run.metrics["tokens_per_s"],
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        }
    print(
        f"gpu_check_deepspeed: ZeRO-{stage}{' + offload' if offload else ''} on {torch.cuda.get_device_name(0)} "
        f"({result['dtype']}): loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps, "
        f"{result['tokens_per_s']:.0f} supervised tokens/s, peak {result['peak_gpu_mib']} MiB"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--stage", type=int, choices=[1, 2, 3], default=2)
    parser.add_argument("--offload", action="store_true")
    args = parser.parse_args()
    result = gpu_check(args.steps, args.stage, args.offload)
    if result is None:
        return 0
    return 0 if result["losses"][-1] < result["losses"][0] else 1


if __name__ == "__main__":
    sys.exit(main())
