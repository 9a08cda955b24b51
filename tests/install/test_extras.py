"""`pip install tunery` without extras: the core trains and checks data; the service says which extra it needs.

Each test runs tunery in a child Python in which the extras' packages cannot be imported and their
distributions are reported missing, as on a machine that installed only the core.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tunery.libraries import MissingExtra, missing_packages, require_extra

EXTRA_MODULES = (
    "fastapi", "uvicorn", "starlette", "multipart", "python_multipart", "sqlalchemy", "alembic", "psycopg",
    "celery", "kombu", "redis", "pydantic_settings", "bitsandbytes", "matplotlib",
)  # fmt: skip
EXTRA_DISTS = (
    "fastapi", "uvicorn", "python-multipart", "sqlalchemy", "alembic", "psycopg", "celery", "redis",
    "pydantic-settings", "bitsandbytes", "matplotlib",
)  # fmt: skip

WITHOUT_EXTRAS = textwrap.dedent(f"""
    import importlib.metadata, sys
    BLOCKED, DISTS = {EXTRA_MODULES!r}, {EXTRA_DISTS!r}
    for name in BLOCKED:  # None in sys.modules: `import name` fails and find_spec(name) is None, as when absent
        sys.modules[name] = None
    real_version = importlib.metadata.version

    def version(name):
        if name.lower().replace("_", "-") in DISTS:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    importlib.metadata.version = version
    from tunery.cli import main
    sys.argv = ["tunery", *sys.argv[1:]]
    main()
""")


def tunery_without_extras(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_the_service_without_its_extra_ends_with_one_line_naming_it():
    done = tunery_without_extras("serve")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'tunery[service]'" in lines[0] and "fastapi" in lines[0], lines


def test_the_inference_server_names_the_smaller_serve_extra():
    done = tunery_without_extras("serve", "--inference-only", "--model", "x")
    assert done.returncode == 2 and "tunery[serve]" in done.stderr and "tunery[service]" not in done.stderr


def test_data_check_and_training_need_no_extra(tmp_path, tiny_model_dir):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(12)]  # fmt: skip
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    checked = tunery_without_extras("data", "check", str(data), "--model", str(tiny_model_dir))
    assert checked.returncode == 0, checked.stderr
    trained = tunery_without_extras(
        "train", "--set", f"model.name={tiny_model_dir}", "--set", f"data.train={data}",
        "--set", "train.max_steps=2", "--set", "train.batch_size=4", "--set", f"output_dir={tmp_path / 'runs'}",
        "--set", "run_name=core", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "runs" / "core" / "adapter" / "adapter_model.safetensors").exists()


def test_an_installed_extra_is_not_refused():
    assert missing_packages("service") == []
    require_extra("service", "tunery serve")


def pretend_missing(monkeypatch, distribution: str) -> None:
    """Installed metadata reports `distribution` absent, as on a machine without its extra."""
    import importlib.metadata

    real = importlib.metadata.version

    def version(name):
        if name == distribution:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_a_missing_extra_names_the_install_command(monkeypatch):
    pretend_missing(monkeypatch, "bitsandbytes")
    with pytest.raises(MissingExtra, match=r"pip install 'tunery\[qlora\]' \(missing: bitsandbytes\)"):
        require_extra("qlora", "method=qlora")


def test_a_report_without_matplotlib_names_the_report_extra(monkeypatch):
    from tunery.evaluate.plots import training_curves

    pretend_missing(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtra, match=r"tunery\[report\]"):
        training_curves([{"step": 1, "loss": 1.0}])
