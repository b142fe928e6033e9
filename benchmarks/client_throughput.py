"""Throughput of the project's API client against the plain peer, on a local latency server.

Both sides send the same requests, in the same run, to the same OpenAI-compatible fake server
(``tests/llm/fault_server.py``, in its own process as a real endpoint would be), which answers
each request after ``L`` seconds:

* **client**: the project's :class:`~r2_write.llm.client.LLMClient` with everything a pipeline
  run has: the SQLite response cache (every answer committed as it arrives), retries with
  Retry-After, call statistics, progress, the endpoint check.
* **plain**: what a user writes by hand: one ``openai.AsyncOpenAI`` (default transport, same
  retries and timeout) and an ``asyncio.Semaphore(C)`` around ``chat.completions.create``,
  all requests gathered at once.

With C requests in flight, the ideal rate is C / L requests per second. Rows: L = 1 s at
C = 32, 128 and 256, fault-free and with a 10% 429 mix (``Retry-After: 1``; the server
answers a 429 after L, like any answer, so each 429 costs a slot for L and the mix's bound is
(1 - 0.1) x C / L). Each side first makes one untimed round of C requests (connections
opened), then ``--repeats`` timed calls of ``--rounds`` x C requests, the two sides taking
turns; the table shows the medians. Every request is new to the cache.

Targets: client >= 97% of plain at every C; client >= 90% of C / L (fault-free rows).
``--profile`` then runs the client once more at C = 32 under cProfile (every thread it uses)
and prints where its CPU goes.

    .venv/bin/python benchmarks/client_throughput.py [--latency 1] [--concurrency 32 128 256] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake server is a test double: tests/llm/fault_server.py
os.environ.setdefault("R2_PROGRESS", "0")  # no progress bar between the rows

import openai  # noqa: E402

from r2_write.llm.client import LLMClient  # noqa: E402
from r2_write.llm.config import LLMConfig, SamplingParams  # noqa: E402

MODEL = "fake-model"
RETRIES = 5  # the project's default (LLMConfig.max_retries), given to both sides
TIMEOUT_S = 30.0
MAX_TOKENS = 32
RETRY_AFTER_S = 1.0
MIX_RATE = 0.1


def conversations(tag: str, n: int) -> list[list[dict]]:
    """``n`` requests that no earlier call made (each call is new to the cache)."""
    return [[{"role": "user", "content": f"{tag} request {i}: write one line about the sea"}] for i in range(n)]


class ProjectSide:
    """The project's client (cache, retries, stats) with C in flight."""

    name = "client"

    def __init__(self, base_url: str, concurrency: int, cache_dir: str):
        self.cfg = LLMConfig(backend="openai", base_url=base_url, model=MODEL, max_concurrency=concurrency,
                             max_retries=RETRIES, timeout_s=TIMEOUT_S,
                             cache_path=str(Path(cache_dir) / f"cache_c{concurrency}.sqlite"))
        self.client = LLMClient(self.cfg, role="benchmark")
        self.sampling = SamplingParams(temperature=0.0, max_new_tokens=MAX_TOKENS)

    def run(self, convs: list) -> int:
        """Failures among ``convs``."""
        return sum(not g.ok for g in self.client.generate(convs, self.sampling))

    def close(self) -> None:
        self.client.backend.close()
        self.client.cache.close()


class PlainSide:
    """``openai.AsyncOpenAI`` + ``asyncio.Semaphore``, as written by hand (one loop kept across calls)."""

    name = "plain"

    def __init__(self, base_url: str, concurrency: int):
        self.concurrency = concurrency
        self.runner = asyncio.Runner()
        self.client = self.runner.run(self._make(base_url))

    @staticmethod
    async def _make(base_url: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=RETRIES, timeout=TIMEOUT_S)

    async def _all(self, convs: list) -> list:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(conv):
            async with sem:
                try:
                    r = await self.client.chat.completions.create(
                        model=MODEL, messages=conv, max_tokens=MAX_TOKENS, temperature=0.0)
                    return r.choices[0].message.content
                except openai.APIError as exc:
                    return exc

        return await asyncio.gather(*(one(c) for c in convs))

    def run(self, convs: list) -> int:
        return sum(isinstance(r, Exception) for r in self.runner.run(self._all(convs)))

    def close(self) -> None:
        self.runner.run(self.client.close())
        self.runner.close()


def timed(side, convs: list) -> dict[str, float]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    failed = side.run(convs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"req_s": len(convs) / wall, "cpu_ms": 1000 * cpu / len(convs), "failed": failed}


def measure(base_url: str, latency_s: float, concurrency: int, rounds: int, repeats: int, label: str,
            cache_dir: str) -> dict:
    """Median warm rates of both sides at concurrency C (they take turns, the first side alternating)."""
    n = rounds * concurrency
    sides = [ProjectSide(base_url, concurrency, cache_dir), PlainSide(base_url, concurrency)]
    try:
        for side in sides:  # untimed: connections, endpoint check, imports
            side.run(conversations(f"{label} C{concurrency} {side.name} warm-up", concurrency))
        runs: dict[str, list[dict]] = {s.name: [] for s in sides}
        for r in range(repeats):
            for side in sides if r % 2 == 0 else sides[::-1]:
                runs[side.name].append(timed(side, conversations(f"{label} C{concurrency} {side.name} run {r}", n)))
    finally:
        for side in sides:
            side.close()
    row = {"C": concurrency, "L": latency_s, "n": n, "faults": label, "ideal": concurrency / latency_s}
    for name, rs in runs.items():
        row[name] = statistics.median(x["req_s"] for x in rs)
        row[f"{name}_cpu"] = statistics.median(x["cpu_ms"] for x in rs)
        row[f"{name}_failed"] = sum(x["failed"] for x in rs)
    row["ratio"] = 100 * row["client"] / row["plain"]
    row["of_ideal"] = 100 * row["client"] / row["ideal"]
    row["plain_of_ideal"] = 100 * row["plain"] / row["ideal"]
    return row


@contextlib.contextmanager
def serve(latency_s: float, fault_rate: float = 0.0) -> Iterator[str]:
    """Base URL of a FaultServer in its own process (429s only, ``Retry-After: 1``, when ``fault_rate``)."""
    cmd = [sys.executable, "-m", "tests.llm.fault_server", "--latency", str(latency_s),
           "--fault-rate", str(fault_rate), "--faults", "429", "--retry-after", str(RETRY_AFTER_S)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"fake server did not start (exit code {proc.poll()})")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def profile_client(base_url: str, latency_s: float, concurrency: int, rounds: int, cache_dir: str, top: int) -> None:
    """cProfile of one warm client call in every thread it uses (caller, event loop, to_thread
    workers), timed in each thread's own CPU time (``time.thread_time``), so waiting is not counted.
    Each profile is switched on and off in its own thread."""
    side = ProjectSide(base_url, concurrency, cache_dir)
    profiles: dict[str, cProfile.Profile] = {}
    local = threading.local()

    def new(label: str) -> cProfile.Profile:
        profiles[f"{label} {len(profiles)}"] = prof = cProfile.Profile(time.thread_time)
        return prof

    class ProfiledExecutor(ThreadPoolExecutor):
        """The loop's default executor (``asyncio.to_thread``: cache commits), each call profiled."""

        def submit(self, fn, /, *args, **kwargs):
            def run():
                if not hasattr(local, "prof"):
                    local.prof = new("to_thread workers")
                local.prof.enable()
                try:
                    return fn(*args, **kwargs)
                finally:
                    local.prof.disable()

            return super().submit(run)

    async def on_loop(enable: bool) -> None:
        if enable:
            local.prof = new("event loop")
            local.prof.enable()
        else:
            local.prof.disable()

    try:
        side.run(conversations(f"profile C{concurrency} warm-up", concurrency))
        loop = side.client.backend._runner.loop  # the backend's event-loop thread
        loop.set_default_executor(ProfiledExecutor())
        convs = conversations(f"profile C{concurrency}", rounds * concurrency)
        caller = new("caller")
        cpu0, t0 = time.process_time(), time.perf_counter()
        asyncio.run_coroutine_threadsafe(on_loop(True), loop).result()
        caller.enable()
        side.run(convs)
        caller.disable()
        asyncio.run_coroutine_threadsafe(on_loop(False), loop).result()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        side.close()
    n = len(convs)
    out = io.StringIO()
    stats = None
    per_thread: dict[str, float] = {}
    for label, prof in profiles.items():
        one = pstats.Stats(prof, stream=out)
        kind = label.rsplit(" ", 1)[0]
        per_thread[kind] = per_thread.get(kind, 0.0) + one.total_tt  # type: ignore[attr-defined]
        stats = one if stats is None else stats.add(prof)
    print(f"\nprofile: project client, C = {concurrency}, L = {latency_s:g} s, {n} requests, "
          f"{n / wall:.1f} req/s under the profiler, process CPU {1000 * cpu / n:.2f} ms per request "
          f"(profiler included)")
    print("profiled CPU ms per request by thread: "
          + ", ".join(f"{k} {1000 * v / n:.3f}" for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1])))
    shares = by_package(stats)
    busy = sum(shares.values())
    print(f"profiled CPU by package (own time; {1000 * busy / n:.3f} ms per request in all):")
    for name, secs in sorted(shares.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {name:<30} {1000 * secs / n:6.3f} ms/request  {100 * secs / busy:5.1f}%")
    own = sum(v for k, v in shares.items() if k.startswith("r2_write."))
    print(f"  (the project's own code, r2_write.*: {1000 * own / n:.3f} ms/request, {100 * own / busy:.1f}%)")
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    print(out.getvalue())


def by_package(stats: pstats.Stats) -> dict[str, float]:
    """Own time per package (openai, httpx2, aiohttp, asyncio, r2_write.llm.cache, sqlite3...)."""
    out: dict[str, float] = {}
    for (path, _, func), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if path == "~":  # a builtin: named by what it is a method of
            kind = re.search(r"of '([\w.]+)'", func) or re.search(r"built-in method ([\w]+)\.", func)
            name = f"builtin {kind.group(1).split('.')[0] if kind else 'builtins'}"
        elif "/r2_write/" in path:
            name = "r2_write." + path.split("/r2_write/")[1].removesuffix(".py").replace("/", ".")
        elif "site-packages/" in path:
            name = path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
        else:
            parent = Path(path).parent.name
            name = parent if parent in ("asyncio", "concurrent", "json", "sqlite3") else f"stdlib {Path(path).stem}"
        out[name] = out.get(name, 0.0) + own
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="server latency per request, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--rounds", type=int, default=8, help="requests per timed call = rounds x C")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per side and row (median)")
    parser.add_argument("--mix", type=float, default=MIX_RATE, help="429 share of the fault rows (0: none)")
    parser.add_argument("--profile", action="store_true", help="then profile the client at C = 32")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        mixes = [0.0] + ([args.mix] if args.mix > 0 else [])
        for rate in mixes:
            label = "none" if rate == 0 else f"429 {100 * rate:g}%"
            with serve(args.latency, rate) as base_url:
                for c in args.concurrency:
                    rows.append(measure(base_url, args.latency, c, args.rounds, args.repeats, label, cache_dir))
                    print(f"  measured C = {c}, faults {label}", file=sys.stderr, flush=True)
        print_table(rows, args)
        if args.profile:
            with serve(args.latency) as base_url:
                profile_client(base_url, args.latency, 32, args.rounds, cache_dir, args.profile_top)


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"\nclient vs plain openai.AsyncOpenAI + asyncio.Semaphore; fake server in its own process; "
          f"{args.rounds} x C requests per timed call, "
          f"median of {args.repeats} per side; both sides {RETRIES} retries, timeout {TIMEOUT_S:g} s; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    header = ("| C | L s | faults | requests | client req/s | plain req/s | client/plain % | client % of C/L "
              "| plain % of C/L | CPU ms/req client | CPU ms/req plain | failed client/plain |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(f"| {r['C']} | {r['L']:g} | {r['faults']} | {r['n']} | {r['client']:.1f} | {r['plain']:.1f} "
              f"| {r['ratio']:.1f} | {r['of_ideal']:.1f} | {r['plain_of_ideal']:.1f} | {r['client_cpu']:.2f} "
              f"| {r['plain_cpu']:.2f} | {r['client_failed']}/{r['plain_failed']} |")
    vs_plain = [f"C={r['C']} {r['faults']}" for r in rows if r["ratio"] < 97.0]
    vs_ideal = [f"C={r['C']}" for r in rows if r["faults"] == "none" and r["of_ideal"] < 90.0]
    print(f"target client >= 97% of plain at every C: {'met' if not vs_plain else 'missed at ' + ', '.join(vs_plain)}")
    print(f"target client >= 90% of C/L (fault-free rows): "
          f"{'met' if not vs_ideal else 'missed at ' + ', '.join(vs_ideal)}")
    if args.mix > 0:
        print(f"(with {100 * args.mix:g}% 429s answered after L, no client can pass "
              f"{100 * (1 - args.mix):.0f}% of C/L: each 429 holds a slot for L)")


if __name__ == "__main__":
    main()
