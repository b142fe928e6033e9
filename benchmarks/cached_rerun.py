"""A repeated synthesis run is served from the response cache.

Runs the writer-judge loop (:func:`r2_write.synthesis.synthesize`, embedded model, N
prompts, one round, small token limits) twice against one fresh SQLite cache in a temp
dir. The second run stands for a rerun in a new process: a new client and a new cache
connection on the same file, the loaded model reused. Target: the rerun makes 0 model
calls and takes < 5% of the first run's wall time.

    .venv/bin/python benchmarks/cached_rerun.py [--prompts 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

from r2_write.data_io import load_prompts  # noqa: E402
from r2_write.judge.judge import JudgeConfig, RubricJudge  # noqa: E402
from r2_write.llm.cache import ResponseCache  # noqa: E402
from r2_write.llm.client import LLMClient  # noqa: E402
from r2_write.llm.config import LLMConfig  # noqa: E402
from r2_write.llm.transformers_backend import TransformersBackend  # noqa: E402
from r2_write.rubrics.schema import generic_rubric  # noqa: E402
from r2_write.synthesis import SynthesisConfig, synthesize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _generic_rows() -> list[dict]:
    params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())
    if "generic_rubric" not in params:  # older layout: under synthesis
        params = yaml.safe_load((ROOT / "conf/base/parameters_synthesis.yml").read_text())["synthesis"]
    return params["generic_rubric"]


def run_once(backend, cfg: LLMConfig, cache_path: Path, prompts: list[dict], loop: SynthesisConfig) -> dict:
    client = LLMClient(cfg, backend=backend, cache=ResponseCache(cache_path))
    judge = RubricJudge(client, JudgeConfig(mode="probability"))
    start = time.perf_counter()
    records = synthesize(prompts, client, judge, loop)
    wall = time.perf_counter() - start
    client.cache.close()
    return {"wall_s": wall, "calls": client.stats.calls, "hits": client.stats.cache_hits, "records": records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--model", default=str(ROOT / "data/06_models/base_model"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = LLMConfig(backend="transformers", model=args.model, device="cpu", batch_size=8, cache_path=None)
    t0 = time.perf_counter()
    backend = TransformersBackend(cfg)
    load_s = time.perf_counter() - t0
    rubric = generic_rubric(_generic_rows())
    rows = load_prompts(ROOT / "data/01_raw/prompts.jsonl").head(args.prompts)
    prompts = [{"id": r.id, "prompt": r.prompt, "criteria": rubric} for r in rows.itertuples()]
    loop = SynthesisConfig(max_rounds=1, plan_tokens=32, draft_tokens=64, reflection_tokens=32)

    with tempfile.TemporaryDirectory() as tmp:
        cache_path = Path(tmp) / "llm_cache.sqlite"
        first = run_once(backend, cfg, cache_path, prompts, loop)
        second = run_once(backend, cfg, cache_path, prompts, loop)

    same = [a.get("trajectory") for a in first["records"]] == [b.get("trajectory") for b in second["records"]]
    print(f"cached rerun: {len(prompts)} prompts x {len(rubric)} criteria, 1 round, embedded model "
          f"(load {load_s:.1f} s, {args.threads} thread(s))")
    print(f"{'run':<8}{'wall s':>10}{'model calls':>14}{'cache hits':>12}")
    for name, r in (("first", first), ("rerun", second)):
        print(f"{name:<8}{r['wall_s']:>10.3f}{r['calls']:>14d}{r['hits']:>12d}")
    ratio = second["wall_s"] / first["wall_s"]
    ok = ratio < 0.05 and second["calls"] == 0 and same
    print(f"ratio rerun/first: {100 * ratio:.3f}% (target < 5%, 0 model calls); identical trajectories: {same}"
          f" -> {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
