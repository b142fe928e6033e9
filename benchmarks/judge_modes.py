"""Judge throughput on the embedded model: shared-prefix probabilities, and probability vs generate.

One table from one run, cache disabled, every row on the same model, machine and thread count:

* WritingBench criteria: the five generic criteria of one ~1,000-token response in probability
  mode, scored from one prefill of the shared prompt prefix (instructions + request + response)
  with five continuations, against five independent prompts (the backend's sharing off: each
  criterion a full prefill). Target: shared >= 3x the criteria per second.
* DeepResearchGym key points: eight key points of one ~1,000-token report, the same two ways.
* Probability vs generate mode on short responses (one forward pass vs a JSON answer parsed and
  retried). Target: probability >= 5x.

Each timing is the best of ``--repeats`` runs, the two ways interleaved (the machine is shared);
the largest difference between the shared and independent probabilities is printed too.

    .venv/bin/python benchmarks/judge_modes.py [--tokens 1000] [--key-points 8] [--repeats 2] [--threads 1]
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
from r2_write.judge.report import ReportJudge  # noqa: E402
from r2_write.llm.client import LLMClient  # noqa: E402
from r2_write.llm.config import LLMConfig  # noqa: E402
from r2_write.rubrics.schema import generic_rubric  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESPONSE = (
    "Dear team,\n\nThis memo summarises the third-quarter results. Revenue rose 4% while costs "
    "held flat, mainly thanks to lower logistics spending. Two risks remain: supplier prices and "
    "a delayed product launch. I propose a review meeting next week.\n\nBest regards,\nAlex"
)
SENTENCES = [
    "Revenue in the third quarter rose by {n} percent against the same quarter last year.",
    "Logistics spending fell after the warehouse in region {n} was consolidated with its neighbour.",
    "Supplier prices for aluminium and copper remain the largest risk to the margin in section {n}.",
    "The delayed product launch moved roughly {n} million in expected revenue into the next year.",
    "Customer churn stayed below {n} percent, helped by the new support contracts.",
    "Hiring slowed in the second half, and {n} open roles were frozen until the budget review.",
    "A sensitivity analysis shows that a {n} percent rise in energy prices would erase the gain.",
    "Source: https://example.org/reports/q3-{n} (internal finance dashboard, accessed in October).",
]
KEY_POINTS = [
    "Revenue grew in the third quarter compared with the previous year.",
    "Logistics costs fell because warehouses were consolidated.",
    "Supplier prices for metals are the main risk to the margin.",
    "The product launch was delayed into the next year.",
    "Customer churn increased sharply during the quarter.",
    "Hiring was frozen for several open roles.",
    "Energy prices could erase the quarter's gains.",
    "The company plans to open three new factories in Asia.",
]


def long_text(tok, tokens: int, salt: int = 0) -> str:
    """A memo-like text of about ``tokens`` tokens (numbered sentences, so it does not repeat)."""
    parts, k = [], 0
    while len(tok.encode(" ".join(parts), add_special_tokens=False)) < tokens:
        parts.append(SENTENCES[k % len(SENTENCES)].format(n=k + 3 + salt))
        k += 1
    ids = tok.encode(" ".join(parts), add_special_tokens=False)[:tokens]
    return tok.decode(ids)


def _generic_rows() -> list[dict]:
    params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())
    if "generic_rubric" not in params:
        params = yaml.safe_load((ROOT / "conf/base/parameters_synthesis.yml").read_text())["synthesis"]
    return params["generic_rubric"]


def best_of(repeats: int, runs: dict) -> dict:
    """``{name: (best wall s, values)}``: each of ``runs`` (name -> callable) ``repeats`` times, interleaved."""
    best: dict = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            values = fn()
            wall = time.perf_counter() - start
            if name not in best or wall < best[name][0]:
                best[name] = (wall, values)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1000, help="length of the judged response and report")
    ap.add_argument("--key-points", type=int, default=8)
    ap.add_argument("--items", type=int, default=8, help="short items of the probability vs generate rows")
    ap.add_argument("--repeats", type=int, default=2, help="timings per row; the best is shown")
    ap.add_argument("--no-generate", action="store_true", help="leave out the probability vs generate rows")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--model", default=str(ROOT / "data/06_models/base_model"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    client = LLMClient(LLMConfig(backend="transformers", model=args.model, device="cpu", batch_size=8, cache_path=None))
    backend, tok = client.backend, client.backend.tok
    criteria = generic_rubric(_generic_rows())
    queries = load_prompts(ROOT / "data/01_raw/prompts.jsonl")["prompt"].tolist()
    response, report = long_text(tok, args.tokens), long_text(tok, args.tokens, salt=100)
    n_resp, n_report = (len(tok.encode(t, add_special_tokens=False)) for t in (response, report))
    wb_items = [JudgeItem(queries[0], response, c) for c in criteria]
    kp_items = [(KEY_POINTS[k % len(KEY_POINTS)] + ("" if k < len(KEY_POINTS) else f" ({k})"), report)
                for k in range(args.key_points)]
    prob = JudgeConfig(mode="probability")

    def wb(share: bool):
        def run():
            backend.share_prefixes = share
            return [r.score for r in RubricJudge(client, prob).score(wb_items)]
        return run

    def kp(share: bool):
        def run():
            backend.share_prefixes = share
            return [v.justification for v in ReportJudge(client, prob).label_key_points(kp_items)]
        return run

    RubricJudge(client, prob).score(wb_items[:1])  # warm-up (first forward pass allocates)
    rows = []  # (workload, judging, items, wall, speed-up note)
    wb_best = best_of(args.repeats, {"independent": wb(False), "shared": wb(True)})
    kp_best = best_of(args.repeats, {"independent": kp(False), "shared": kp(True)})
    backend.share_prefixes = True
    wb_diff = max(abs(a - b) for a, b in zip(wb_best["shared"][1], wb_best["independent"][1]))
    wb_name = f"{len(wb_items)} criteria, one {n_resp}-token response"
    kp_name = f"{len(kp_items)} key points, one {n_report}-token report"
    for name, best, target in [(wb_name, wb_best, 3.0), (kp_name, kp_best, None)]:
        base, shared = best["independent"][0], best["shared"][0]
        n = len(best["shared"][1])
        rows.append((name, "probability, independent prompts", n, base, "1.0x"))
        ratio = base / shared
        verdict = "" if target is None else f" (target >= {target:g}x: {'PASS' if ratio >= target else 'FAIL'})"
        rows.append((name, "probability, shared prefix", n, shared, f"{ratio:.1f}x{verdict}"))
    kp_same = kp_best["shared"][1] == kp_best["independent"][1]

    if not args.no_generate:
        items = [JudgeItem(queries[k % len(queries)], RESPONSE, criteria[k % len(criteria)]) for k in range(args.items)]
        gen = JudgeConfig(mode="generate", max_attempts=3, max_new_tokens=96)
        judges = {}

        def modes(mode: str, cfg: JudgeConfig):
            def run():
                judges[mode] = RubricJudge(client, cfg)
                return judges[mode].score(items)
            return run

        best = best_of(1, {"generate": modes("generate", gen), "probability": modes("probability", prob)})
        name = f"{len(items)} criteria, short responses"
        rows.append((name, f"generate (JSON; {judges['generate'].stats.parse_failures} malformed)", len(items),
                     best["generate"][0], "1.0x"))
        ratio = best["generate"][0] / best["probability"][0]
        rows.append((name, "probability", len(items), best["probability"][0],
                     f"{ratio:.1f}x (target >= 5x: {'PASS' if ratio >= 5 else 'FAIL'})"))

    load_after = os.getloadavg()
    print(f"judge throughput: embedded model ({Path(args.model).name}), CPU, {args.threads} torch thread(s), "
          f"batch 8, cache disabled, best of {args.repeats} (generate rows: 1 run)")
    print(f"load average (1 min) {load_before[0]:.2f} at start, {load_after[0]:.2f} at end, {os.cpu_count()} CPUs")
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'workload':<{width}}{'judging':<44}{'items':>6}{'wall s':>9}{'items/s':>9}  speed-up")
    for name, how, n, wall, note in rows:
        print(f"{name:<{width}}{how:<44}{n:>6}{wall:>9.2f}{n / wall:>9.2f}  {note}")
    print(f"shared vs independent: largest criterion score difference {wb_diff:.1e} (scores kept to 4 decimals); "
          f"key-point labels and probabilities (3 decimals) {'identical' if kp_same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
