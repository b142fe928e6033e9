"""Progress of long batches: one-line summaries at intervals, a bar only on a terminal."""

from __future__ import annotations

import logging

from r2_write.llm.config import SamplingParams
from r2_write.progress import Progress
from tests.fakes import FakeBackend, make_client


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_periodic_one_line_summaries_with_rate_and_eta(caplog):
    clock = Clock()
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress(1000, "LLM judge m", log, log_every_s=30, bar=False, clock=clock) as p:
            for _ in range(10):
                clock.t += 10
                p.update(100)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4  # at 30 s, 60 s, 90 s, then the last line
    assert lines[0] == "progress LLM judge m: 300/1,000 (30%), 10.00/s, elapsed 30s, ETA 1m 10s"
    assert lines[-1].startswith("progress LLM judge m: 1,000/1,000 (100%)") and lines[-1].endswith("ETA 0s")


def test_short_batches_log_nothing_and_no_bar_off_a_terminal(caplog, monkeypatch):
    monkeypatch.delenv("R2_PROGRESS", raising=False)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        p = Progress(5, "x", logging.getLogger("test.progress"), log_every_s=30)
        p.update(5)
        p.close()
    assert p._bar is None  # pytest captures stderr: not a terminal
    assert not [r for r in caplog.records if r.getMessage().startswith("progress")]


def test_client_batches_report_progress(caplog, monkeypatch):
    monkeypatch.setenv("R2_PROGRESS_LOG_S", "0")  # a summary after every chunk
    client = make_client(FakeBackend(), batch_size=2)
    with caplog.at_level(logging.INFO, logger="r2_write.llm.client"):
        client.generate([[{"role": "user", "content": f"q{i}"}] for i in range(5)], SamplingParams(max_new_tokens=4))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress")]
    assert [ln.split(": ")[1].split(" ")[0] for ln in lines] == ["2/5", "4/5", "5/5"]
