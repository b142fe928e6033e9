"""Progress of long batches: a bar on a terminal, a one-line log summary at intervals for log files.

:class:`Progress` shows a tqdm bar (counts, rate, ETA) only when stderr is a terminal, so
``kedro run > run.log`` and CI logs get no bar characters; whatever the output, it logs one
line (``LLM judge gpt-4.1-mini: 1,200/5,000 (24%), 3.1/s, ETA 20m 26s``) every
``R2_PROGRESS_LOG_S`` seconds (default 30) while the batch runs, and a last line when a
batch that logged ends. ``R2_PROGRESS=0`` turns the bar off on a terminal too.
"""

from __future__ import annotations

import logging
import os
import sys
import time

DEFAULT_LOG_S = 30.0


def _log_interval() -> float:
    try:
        return max(float(os.environ.get("R2_PROGRESS_LOG_S", DEFAULT_LOG_S)), 0.0)
    except ValueError:
        return DEFAULT_LOG_S


def format_seconds(s: float) -> str:
    """``3725`` -> ``'1h 2m 5s'``.

    >>> format_seconds(3725), format_seconds(59.4), format_seconds(120), format_seconds(float("inf"))
    ('1h 2m 5s', '59s', '2m 0s', '?')
    """
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    parts = ([f"{h}h"] if h else []) + ([f"{m}m"] if h or m else []) + [f"{sec}s"]
    return " ".join(parts)


class Progress:
    """Counts done out of ``total``: a terminal bar and periodic one-line log summaries.

    Args:
        total: Items in the batch.
        desc: What is counted, e.g. ``"LLM judge gpt-4.1-mini"``.
        logger: Where the summaries go (INFO).
        log_every_s: Seconds between summaries (default ``R2_PROGRESS_LOG_S`` or 30; 0: every update).
        bar: Show a tqdm bar (default: stderr is a terminal and ``R2_PROGRESS`` is not ``0``).
        clock: Time source (tests).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        logger: logging.Logger,
        log_every_s: float | None = None,
        bar: bool | None = None,
        clock=time.monotonic,
    ):
        self.total, self.desc, self.logger, self.clock = int(total), desc, logger, clock
        self.done = 0
        self.log_every_s = _log_interval() if log_every_s is None else log_every_s
        self.start = self._last_log = clock()
        self.logged = False
        if bar is None:
            bar = os.environ.get("R2_PROGRESS", "1") != "0" and sys.stderr.isatty()
        self._bar = None
        if bar and self.total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit="req", leave=False, dynamic_ncols=True)

    def summary(self) -> str:
        """``"<desc>: done/total (pct), rate/s, ETA ..."``."""
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.desc}: {self.done:,}/{self.total:,} ({pct:.0f}%), {rate:.2f}/s, "
            f"elapsed {format_seconds(elapsed)}, ETA {format_seconds(left) if self.done < self.total else '0s'}"
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = self.clock()
        if self.done < self.total and now - self._last_log >= self.log_every_s:
            self._last_log = now
            self.logged = True
            self.logger.info("progress %s", self.summary())

    def close(self) -> None:
        """Close the bar; log the last line if this batch logged along the way."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.logged:
            self.logger.info("progress %s", self.summary())
            self.logged = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
