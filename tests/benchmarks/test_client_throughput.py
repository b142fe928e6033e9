"""benchmarks/client_throughput.py: both sides answer every request (429s retried), and the profile
covers the client's threads. Behaviour only: nothing here is timed against a target."""

from __future__ import annotations

import pytest

from tests.benchmarks._load import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("client_throughput")


def test_client_and_plain_answer_every_request_through_a_429_mix(bench, tmp_path):
    with bench.serve(0.02, fault_rate=0.3) as base_url:
        row = bench.measure(base_url, 0.02, concurrency=4, rounds=2, repeats=2, label="429 30%",
                            cache_dir=str(tmp_path))
    assert (row["n"], row["client_failed"], row["plain_failed"]) == (8, 0, 0)
    assert row["client"] > 0 and row["plain"] > 0 and row["ideal"] == pytest.approx(200.0)
    assert row["ratio"] == pytest.approx(100 * row["client"] / row["plain"])


def test_every_timed_request_is_new_to_the_cache(bench, tmp_path):
    with bench.serve(0.0) as base_url:
        side = bench.ProjectSide(base_url, 2, str(tmp_path))
        try:
            side.run(bench.conversations("a", 3))
            side.run(bench.conversations("b", 3))
            assert side.client.stats.calls == 6 and side.client.stats.cache_hits == 0
        finally:
            side.close()


def test_the_profile_covers_the_event_loop_and_the_cache_commits(bench, tmp_path, capsys):
    with bench.serve(0.01) as base_url:
        bench.profile_client(base_url, 0.01, concurrency=4, rounds=2, cache_dir=str(tmp_path), top=40)
    out = capsys.readouterr().out
    assert "event loop" in out and "to_thread workers" in out and "caller" in out
    assert "r2_write.llm.cache" in out and "the project's own code" in out
