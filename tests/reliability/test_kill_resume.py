"""Kill -9 in the middle of synthesis, rerun the same command: nothing paid twice, same output.

Two temporary project copies run ``kedro run --pipelines rubrics,synthesis`` with every role
on a FaultServer (no faults, 0.05 s per answer, one request at a time, so synthesis takes
seconds). The reference copy runs undisturbed. The other is killed with SIGKILL halfway
through the first judge pass (inside one client chunk), then the same command is run
again. The server records every request body, so the requests made after the kill can be
compared with those completed before it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest

from r2_write.llm.cache import cache_key
from r2_write.llm.config import SamplingParams
from r2_write.prompts import rubric_writer
from tests.reliability._project import (
    JUDGE_MARKER,
    cache_keys,
    comparable,
    kedro_args,
    kedro_env,
    read_version,
    run_kedro,
    server_params,
    versions,
)

pytestmark = pytest.mark.slow

N_PROMPTS, N_CRITERIA, CONCURRENCY = 3, 5, 1  # the generic rubric has 5 criteria
# plan + draft of every prompt, then half of the first judge pass: mid-chunk
KILL_AFTER = 2 * N_PROMPTS + (N_CRITERIA * N_PROMPTS) // 2
TRAJECTORIES = "03_primary/synthesis/trajectories.parquet"


def _args(base_url: str) -> list[str]:
    params = {**server_params(base_url, max_concurrency=CONCURRENCY), "synthesis.num_prompts": N_PROMPTS,
              "synthesis.loop.max_rounds": 2}
    return kedro_args("rubrics,synthesis", params)


def _is_synthesis(entry: dict) -> bool:
    return entry["body"]["messages"][0]["content"] != rubric_writer.SYSTEM


def _ident(body: dict) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def _cache_key(body: dict) -> str:
    """The client's cache key of a request the server received (openai backend)."""
    sampling = SamplingParams(temperature=body["temperature"], top_p=body["top_p"],
                              max_new_tokens=body["max_tokens"], seed=body["seed"])
    return cache_key(kind="chat", backend="openai", model=body["model"], messages=body["messages"],
                     sampling=sampling.model_dump())


def _kill_mid_synthesis(proc: subprocess.Popen, server, project, timeout_s: float = 180) -> tuple[list[dict], set]:
    """SIGKILL the run once KILL_AFTER synthesis answers were sent, at a moment when the
    client had committed every answer it was sent (checked while the run is stopped with
    SIGSTOP, so nothing moves between the check and the kill). A client that commits only
    whole chunks never gets there mid-chunk: it is killed once 3 answers sent to it are
    missing from its cache (a client committing each answer lags by one at most).

    Returns the server's requests as of the kill (outcomes frozen) and the cache keys.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, "the run finished before it could be killed mid-synthesis"
        assert time.monotonic() < deadline, f"no {KILL_AFTER} synthesis answers after {timeout_s} s"
        done = sum(1 for e in list(server.recorded) if e["outcome"] == "ok" and _is_synthesis(e))
        if done >= KILL_AFTER:
            os.kill(proc.pid, signal.SIGSTOP)
            snapshot = [dict(e) for e in server.recorded]
            cached = cache_keys(project)
            answered = {_cache_key(e["body"]) for e in snapshot if e["outcome"] == "ok"}
            if not answered - cached or len(answered - cached) >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return snapshot, cached
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.005)


def test_kill_and_resume(fault_server, new_project):
    ref_server = fault_server(latency_s=0.05, judge_marker=JUDGE_MARKER, record=True)
    server = fault_server(latency_s=0.05, judge_marker=JUDGE_MARKER, record=True)
    ref_project, project = new_project("reference"), new_project("killed")

    # the reference runs alongside the killed run (its own copy, cache and server)
    with open(ref_project / "run.log", "w") as ref_log:
        ref = subprocess.Popen(_args(ref_server.base_url), cwd=ref_project, env=kedro_env(), stdout=ref_log,
                               stderr=subprocess.STDOUT)
        killed = subprocess.Popen(_args(server.base_url), cwd=project, env=kedro_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            before, cached_at_kill = _kill_mid_synthesis(killed, server, project)
            assert not versions(project, TRAJECTORIES), "the killed run must not have saved trajectories"
            run_kedro(project, _args(server.base_url))  # the same command again
            assert ref.wait(timeout=240) == 0, (ref_project / "run.log").read_text()[-4000:]
        finally:
            for proc in (killed, ref):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    after = server.recorded[len(before):]

    completed_before = {_ident(e["body"]) for e in before if e["outcome"] == "ok"}
    repeated = [e for e in after if _ident(e["body"]) in completed_before]
    repeated_cached = [e for e in repeated if _cache_key(e["body"]) in cached_at_kill]
    in_flight = [e for e in before if e["outcome"] is None]
    synth_before = sum(1 for e in before if e["outcome"] == "ok" and _is_synthesis(e))
    synth_total = sum(1 for e in ref_server.recorded if _is_synthesis(e))
    print(f"\nkill/resume: killed after {synth_before} of {synth_total} synthesis answers "
          f"({len(before)} requests before the kill, {len(in_flight)} in flight); "
          f"{len(after)} requests after the kill; repeated after the kill: {len(repeated)} "
          f"({len(repeated_cached)} of them cached before the kill)")

    assert KILL_AFTER <= synth_before < synth_total
    assert not repeated_cached, "a request answered and cached before the kill was made again"
    assert not repeated, (
        f"{len(repeated)} requests completed before the kill were made again (committed only per chunk?)"
    )
    # together, the killed and the resumed run asked exactly what the reference asked
    ref_bodies = {_ident(e["body"]) for e in ref_server.recorded}
    assert {_ident(e["body"]) for e in before + after} == ref_bodies

    got, want = read_version(project, TRAJECTORIES), read_version(ref_project, TRAJECTORIES)
    assert len(want) == N_PROMPTS
    pd.testing.assert_frame_equal(comparable(got), comparable(want))
    for rel in ("03_primary/synthesis/steps.parquet", "03_primary/synthesis/failures.parquet"):
        pd.testing.assert_frame_equal(comparable(read_version(project, rel)), comparable(read_version(ref_project, rel)))
    assert read_version(project, "03_primary/synthesis/failures.parquet").empty
