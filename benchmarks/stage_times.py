"""The whole ``kedro run`` split by stage, then the same run again from the response cache.

Copies the project (pyproject.toml, conf/, the raw prompts, a link to the embedded checkpoint)
into a temporary directory, runs ``kedro run`` twice there with the same parameters, and
reads each run's MLflow run (the project's own sqlite store in the copy): ``time/<pipeline>``,
``calls/<pipeline>`` and ``cache_hits/<pipeline>`` (:class:`r2_write.hooks.StageTimingHooks`:
every LLM client of the Kedro process). Prints one table: seconds and model calls per stage in
the first run and the rerun.

The rerun should make no model call (every prompt is in the response cache) and train nothing
(the trainers reuse their finished trainings, :mod:`r2_write.training.reuse`); what it still
costs is Kedro, data and MLflow bookkeeping.

    .venv/bin/python benchmarks/stage_times.py            # conf/base sizes: what `make run` does, twice
    .venv/bin/python benchmarks/stage_times.py --tiny     # one prompt per stage (tests/test_run_full.py sizes)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/: the project copy and the tiny sizes of the end-to-end tests
KEDRO = str(Path(sys.executable).with_name("kedro"))
STAGES = ("rubrics", "synthesis", "filtering", "scoring", "sft", "ppo", "ppo_outcome", "grpo", "evaluation")


def tiny_params() -> str:
    from tests.test_run_full import TINY

    return TINY


def kedro_run(project: Path, params: str, threads: int) -> float:
    from tests.reliability._project import kedro_env

    env = kedro_env(threads)
    argv = [KEDRO, "run"] + (["--params", params] if params else [])
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"kedro run failed:\n{proc.stderr[-3000:]}")
    return wall


def run_metrics(project: Path) -> list[dict]:
    """Per kedro run (oldest first): ``time/*``, ``calls/*`` and ``cache_hits/*`` of the parent run."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", order_by=["attribute.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    out = []
    for parent in parents:
        out.append({kind: {k[len(kind) + 1:]: v for k, v in parent.data.metrics.items() if k.startswith(f"{kind}/")}
                    for kind in ("time", "calls", "cache_hits")})
    return out


def table(first: dict, rerun: dict, walls: tuple[float, float]) -> str:
    lines = ["| stage | first run (s) | rerun (s) | rerun / first | model calls, first (cache hits) | model calls, rerun (cache hits) |",
             "|---|---|---|---|---|---|"]

    def calls(run: dict, stage: str) -> str:
        if stage == "total":
            return f"{sum(v for k, v in run['calls'].items() if k != 'total'):.0f} ({sum(run['cache_hits'].values()):.0f})"
        return f"{run['calls'].get(stage, 0):.0f} ({run['cache_hits'].get(stage, 0):.0f})"

    for stage in (*STAGES, "total"):
        a, b = first["time"].get(stage), rerun["time"].get(stage)
        if a is None and b is None:
            continue
        ratio = f"{b / a:.0%}" if a and b is not None else "-"
        lines.append(f"| {stage} | {a or 0:.1f} | {b or 0:.1f} | {ratio} | {calls(first, stage)} | {calls(rerun, stage)} |")
    lines.append(f"| `kedro run` wall (process) | {walls[0]:.1f} | {walls[1]:.1f} | {walls[1] / walls[0]:.0%} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="One prompt per stage, one step per trainer.")
    ap.add_argument("--params", default="", help="Extra `kedro run --params` (after --tiny's).")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the runs (0: torch's default).")
    ap.add_argument("--model", default=str(ROOT / "data/06_models/base_model"))
    ap.add_argument("--keep", action="store_true", help="Keep the project copy (its path is printed).")
    args = ap.parse_args(argv)
    benchmarks = (ROOT / ".." / "shared" / "benchmarks").resolve()
    params = ",".join(p for p in (tiny_params() if args.tiny else "", args.params,
                                  f"benchmarks_root={benchmarks}" if benchmarks.is_dir() else "") if p)
    tmp = Path(tempfile.mkdtemp(prefix="stage_times_"))
    try:
        from tests.test_run import copy_project

        project = copy_project(tmp, ROOT, Path(args.model))
        walls = []
        for label in ("first run", "rerun"):
            walls.append(kedro_run(project, params, args.threads))
            print(f"[{label}] {walls[-1]:.0f} s", flush=True)
        first, rerun = run_metrics(project)[-2:]
        print(f"\n`kedro run` {'--tiny sizes' if args.tiny else 'conf/base sizes'} twice in one project copy "
              f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end):\n")
        print(table(first, rerun, (walls[0], walls[1])))
    finally:
        if args.keep:
            print(f"\nproject copy kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
