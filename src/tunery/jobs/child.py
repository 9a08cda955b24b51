"""The training process of one job: `python -m tunery.jobs.child SPEC.json`.

SPEC holds the config, the run directory and the parent's pid. A run directory with
a config.yaml is resumed from its newest complete checkpoint. On a failure the error
goes to `failure.json` beside the run, where the runner turns it into the job's reason.
The process dies with its parent (Linux PR_SET_PDEATHSIG), so a killed worker leaves
no orphan training to race the one that resumes the job.
"""

from __future__ import annotations

import ctypes
import json
import signal
import sys
import traceback
from pathlib import Path


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    _die_with_parent(spec["parent_pid"])
    run_dir = Path(spec["run_dir"])
    failure = Path(spec["failure_file"])
    failure.unlink(missing_ok=True)
    from tunery.libraries import quiet_libraries

    quiet_libraries()
    try:
        from tunery.training.recipe import train

        resume = run_dir if (run_dir / "config.yaml").exists() else None
        if spec.get("processes", 1) > 1:  # one per GPU the worker gave the job: torchrun
            from tunery.launch import Launch, launch_training

            launch_training(spec["config"], [], resume, Launch(nproc_per_node=spec["processes"]), quiet=True)
        elif resume is not None:
            train(None, resume=run_dir, quiet=True)
        else:
            train(spec["config"], quiet=True)
    except BaseException as err:
        code = failure_code(err)
        failure.write_text(
            json.dumps(
                {
                    "code": code,
                    "message": str(err) if code != "internal_error" else f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(),
                }
            ),
            encoding="utf-8",
        )
        traceback.print_exc()
        return 1
    return 0


def failure_code(err: BaseException) -> str:
    """The error's stable code; a plain out-of-memory (torch's or Python's) is one too."""
    from tunery.errors import error_code

    code = error_code(err)
    if code is not None:
        return code
    torch = sys.modules.get("torch")
    if isinstance(err, MemoryError) or (torch is not None and isinstance(err, torch.OutOfMemoryError)):
        return "out_of_memory"
    return "internal_error"


def _die_with_parent(parent_pid: int) -> None:
    import os

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(137)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
