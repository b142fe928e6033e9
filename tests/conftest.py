"""Shared fixtures: offline environment, project root, a scripted fake LLM client, the fault-injecting
server, the embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# set before kedro / transformers / mlflow are imported by any test module
for _k, _v in {
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_k, _v)
# `make test` runs pytest-xdist workers (-n auto): the cores are split between them, so torch in
# one worker does not oversubscribe the CPU that the others (and their kedro subprocesses) use.
if _workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

from tests.fakes import FakeBackend, make_client  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_MODEL = PROJECT_ROOT / "data" / "06_models" / "base_model"


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The repository root (holds pyproject.toml, conf/, data/)."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def benchmarks_root(project_root) -> Path:
    """The downloaded benchmarks, where the project's setting points (``benchmarks_root`` in
    conf/base/globals.yml, relative to the project root); tests that need them skip without them."""
    import yaml

    setting = yaml.safe_load((project_root / "conf" / "base" / "globals.yml").read_text())["benchmarks_root"]
    root = (project_root / setting).resolve()
    if not root.is_dir():
        pytest.skip(f"benchmarks not available: benchmarks_root {setting} (conf/base/globals.yml) is not {root}")
    return root


@pytest.fixture(autouse=True)
def _trained_models_in_tmp(tmp_path_factory, monkeypatch):
    """Finished trainings that tests store (r2_write.training.reuse) go to a temporary folder, not data/."""
    from r2_write.training import reuse

    monkeypatch.setattr(reuse, "TRAINED_ROOT", str(tmp_path_factory.mktemp("trained")))


@pytest.fixture
def fake_backend() -> FakeBackend:
    """A fresh scripted backend (default: well-behaved answers for every role)."""
    return FakeBackend()


@pytest.fixture
def fake_client(fake_backend):
    """An LLMClient over ``fake_backend``, no cache. Script it via ``fake_client.backend.respond``."""
    return make_client(fake_backend)


@pytest.fixture
def fault_server():
    """Factory: ``fault_server(latency_s=..., fault_rate=..., ...)`` starts a
    :class:`~tests.llm.fault_server.FaultServer` in a thread of the test process (it outlives any
    killed `kedro` child), stopped after the test."""
    from tests.llm.fault_server import FaultServer

    servers: list[FaultServer] = []

    def start(**kwargs) -> FaultServer:
        server = FaultServer(**kwargs).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    if not (EMBEDDED_MODEL / "model.safetensors").exists():
        pytest.skip("embedded model missing: run `make model`")
    return EMBEDDED_MODEL


@pytest.fixture(scope="session")
def embedded_client(embedded_model_dir):
    """The real transformers backend on the embedded SmolLM2-135M checkpoint (no cache), loaded once."""
    import torch

    from r2_write.llm.client import LLMClient
    from r2_write.llm.config import LLMConfig

    # one thread: on a small shared CPU, two contended OpenMP threads run several times slower
    torch.set_num_threads(1)
    return LLMClient(LLMConfig(backend="transformers", model=str(embedded_model_dir), device="cpu", batch_size=8, cache_path=None))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_model_dir) -> str:
    """A 2-layer random Llama with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny") / "model"
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def project_params(project_root) -> dict:
    """The merged parameters of conf/base (as ``kedro run`` sees them, without runtime params)."""
    from kedro.config import OmegaConfigLoader

    from r2_write.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(project_root / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "base"})
    return dict(loader["parameters"])


@pytest.fixture(autouse=True)
def _isolate_mlflow_state():
    """Undo what a test did to MLflow's process-wide state (tracking URI, active experiment and
    run, the MLFLOW_EXPERIMENT_ID variable that ``set_experiment`` exports to subprocesses)."""
    import mlflow

    uri, env_id = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(uri)
    mlflow.tracking.fluent._active_experiment_id = None
    if env_id is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = env_id
