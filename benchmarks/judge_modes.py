"""Probability-mode vs generate-mode judging on the embedded model.

Scores K (query, response, criterion) items twice with the cache disabled: ``probability``
(one forward pass, expected score over "1".."10") and ``generate`` (JSON answer, parsed,
malformed answers retried up to ``max_attempts``). Target: probability mode >= 5x faster.

    .venv/bin/python benchmarks/judge_modes.py [--items 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

from r2_write.data_io import load_prompts  # noqa: E402
from r2_write.judge.judge import JudgeConfig, JudgeItem, RubricJudge  # noqa: E402
from r2_write.llm.client import LLMClient  # noqa: E402
from r2_write.llm.config import LLMConfig  # noqa: E402
from r2_write.rubrics.schema import generic_rubric  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESPONSE = (
    "Dear team,\n\nThis memo summarises the third-quarter results. Revenue rose 4% while costs "
    "held flat, mainly thanks to lower logistics spending. Two risks remain: supplier prices and "
    "a delayed product launch. I propose a review meeting next week.\n\nBest regards,\nAlex"
)


def _generic_rows() -> list[dict]:
    params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())
    if "generic_rubric" not in params:
        params = yaml.safe_load((ROOT / "conf/base/parameters_synthesis.yml").read_text())["synthesis"]
    return params["generic_rubric"]


def measure(client: LLMClient, items: list[JudgeItem], mode: str) -> dict:
    judge = RubricJudge(client, JudgeConfig(mode=mode, max_attempts=3, max_new_tokens=96))
    start = time.perf_counter()
    results = judge.score(items)
    wall = time.perf_counter() - start
    return {
        "mode": mode,
        "items": len(items),
        "wall_s": wall,
        "per_item": wall / len(items),
        "parse_failures": judge.stats.parse_failures,
        "unscored": sum(r.score is None for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--model", default=str(ROOT / "data/06_models/base_model"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    client = LLMClient(LLMConfig(backend="transformers", model=args.model, device="cpu", batch_size=8, cache_path=None))
    criteria = generic_rubric(_generic_rows())
    queries = load_prompts(ROOT / "data/01_raw/prompts.jsonl")["prompt"].tolist()
    items = [JudgeItem(queries[k % len(queries)], RESPONSE, criteria[k % len(criteria)]) for k in range(args.items)]

    measure(client, items[:1], "probability")  # warm-up (first forward pass allocates)
    rows = [measure(client, items, "probability"), measure(client, items, "generate")]
    print(f"judge modes: {args.items} items on the embedded model, cache disabled, {args.threads} thread(s)")
    print(f"{'mode':<13}{'items':>6}{'wall s':>9}{'s/criterion':>13}{'parse failures':>16}{'unscored':>10}")
    for r in rows:
        print(f"{r['mode']:<13}{r['items']:>6}{r['wall_s']:>9.2f}{r['per_item']:>13.3f}{r['parse_failures']:>16}{r['unscored']:>10}")
    speedup = rows[1]["wall_s"] / rows[0]["wall_s"]
    print(f"speed-up probability vs generate: {speedup:.1f}x (target >= 5x) -> {'PASS' if speedup >= 5 else 'FAIL'}")


if __name__ == "__main__":
    main()
