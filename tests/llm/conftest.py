"""Fixtures for the OpenAI-compatible backend: a real `transformers serve` (the fault server is in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.optional_deps import require

SERVE_READY_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _served_models(base_url: str) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/models", timeout=2) as resp:
        return [m.get("id") for m in json.load(resp).get("data", [])]


def _tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def transformers_serve(embedded_model_dir, tmp_path_factory):
    """Base URL of a real ``transformers serve`` pinned to the embedded model on CPU.

    The server is started as ``transformers serve --host 127.0.0.1 --port P --device cpu
    <model dir>``; pinned to that directory, it only answers requests whose ``model`` is
    that exact path (``str(embedded_model_dir)``). Skips only when the CLI is missing; a
    server that starts but never becomes ready fails the test, with its log.
    """
    exe = Path(sys.executable).with_name("transformers")
    cli = str(exe) if exe.exists() else shutil.which("transformers")
    require(cli is not None, "transformers[serving]", "the `transformers` CLI is missing: pip install 'transformers[serving]'")
    model = str(embedded_model_dir)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path_factory.mktemp("transformers_serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", model]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVE_READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if model in _served_models(base_url):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`transformers serve` not ready after {SERVE_READY_TIMEOUT_S:g} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
