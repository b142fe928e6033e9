"""Throughput of the OpenAI-compatible backend against a fixed-latency local server.

With per-request latency L and C requests in flight, the ideal rate is C / L requests per
second; the ratio shows how much of that the backend's concurrency actually achieves
(target: >= 90% at C = 32). The fake server runs in its own process by default, as a
real endpoint would (``--in-process`` shares the client's interpreter and GIL instead).

    .venv/bin/python benchmarks/client_throughput.py [--latency 0.2] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake server is a test double: tests/llm/fault_server.py

from r2_write.llm.config import LLMConfig, SamplingParams  # noqa: E402
from r2_write.llm.openai_backend import OpenAIBackend  # noqa: E402
from tests.llm.fault_server import FaultServer  # noqa: E402


def measure(base_url: str, latency_s: float, concurrency: int) -> dict[str, float]:
    """Wall time of generate() over max(4C, 16) requests at concurrency C.

    One backend makes two identical calls: the first ("cold") also opens its connections,
    the second ("warm") reuses them, as every chunk after the first does in a pipeline
    run. The table reports the warm call and, last, the cold call's ratio.
    """
    n = max(4 * concurrency, 16)
    cfg = LLMConfig(
        backend="openai", base_url=base_url, model="fake-model", cache_path=None,
        max_concurrency=concurrency, timeout_s=30, max_retries=0,
    )
    convs = [[{"role": "user", "content": f"benchmark request {i}"}] for i in range(n)]
    sampling = SamplingParams(temperature=0.0, max_new_tokens=32)
    backend = OpenAIBackend(cfg)
    walls = []
    for _ in range(2):
        start = time.perf_counter()
        gens = backend.generate(convs, sampling)
        walls.append(time.perf_counter() - start)
        failed = [g.error for g in gens if not g.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} requests failed: {failed[0]}")
    backend.close()
    ideal = concurrency / latency_s
    cold, warm = (100 * n / w / ideal for w in walls)
    return {"C": concurrency, "requests": n, "wall_s": walls[1], "req_s": n / walls[1], "ideal": ideal,
            "ratio": warm, "cold_ratio": cold}


@contextlib.contextmanager
def serve(latency_s: float, in_process: bool) -> Iterator[str]:
    """Base URL of a fault-free FaultServer with the given latency."""
    if in_process:
        with FaultServer(latency_s=latency_s, fault_rate=0.0) as server:
            yield server.base_url
        return
    cmd = [sys.executable, "-m", "tests.llm.fault_server", "--latency", str(latency_s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"fake server did not start (exit code {proc.poll()})")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--in-process", action="store_true", help="run the server in this process")
    args = parser.parse_args()
    with serve(args.latency, args.in_process) as base_url:
        measure(base_url, args.latency, 2)  # warm up imports
        rows = [measure(base_url, args.latency, c) for c in args.concurrency]
    where = "in-process" if args.in_process else "separate process"
    print(f"latency L = {args.latency:g} s per request, server in a {where}")
    print(f"{'C':>4} {'requests':>9} {'wall s':>8} {'req/s':>8} {'ideal C/L':>10} {'ratio %':>8} {'cold %':>7}")
    for r in rows:
        print(f"{r['C']:>4} {r['requests']:>9} {r['wall_s']:>8.3f} {r['req_s']:>8.1f} {r['ideal']:>10.1f} "
              f"{r['ratio']:>8.1f} {r['cold_ratio']:>7.1f}")


if __name__ == "__main__":
    main()
