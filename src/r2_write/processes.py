"""Child processes whose output streams through this one: the trainers' launchers (accelerate, veRL).

A training that runs in processes of its own (``accelerate launch``, veRL's driver) is started
here: its output goes line by line to this process's stdout (so the Kedro log shows it live), the
last lines and the lines that name a cause are kept for the one-line failure message, the child
gets SIGTERM when this process dies (Linux), and an interrupt of this process stops the child
before it propagates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Streamed:
    """How a streamed child process ended."""

    returncode: int
    tail: list[str] = field(default_factory=list)  # its last lines
    causes: list[str] = field(default_factory=list)  # what ``cause`` picked out, oldest first


def run_streamed(
    command: list[str], env: dict[str, str] | None = None, cause: Callable[[str], str | None] | None = None,
    tail_lines: int = 40, cause_lines: int = 20,
) -> Streamed:
    """Run ``command`` with its output streamed to stdout; returns its exit status, last lines and causes.

    Args:
        command: The command line.
        env: Variables added to this process's environment.
        cause: ``line -> text or None``: the text of a line that names a failure's cause (kept
            apart, so a long traceback after it does not push it out of the tail).
        tail_lines, cause_lines: How many last lines and causes to keep.

    Raises:
        OSError: The command could not start.

    >>> r = run_streamed([sys.executable, "-c", "print('ok'); print('Error: x')"], cause=lambda l: l if "Error" in l else None)
    ok
    Error: x
    >>> r.returncode, r.tail, r.causes
    (0, ['ok', 'Error: x'], ['Error: x'])
    """
    tail: deque[str] = deque(maxlen=tail_lines)
    causes: deque[str] = deque(maxlen=cause_lines)
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, preexec_fn=die_with_parent if sys.platform == "linux" else None)
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            line = line.rstrip("\n")
            tail.append(line)
            found = cause(line) if cause else None
            if found:
                causes.append(found)
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    return Streamed(rc, list(tail), list(causes))


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """SIGTERM this child when its parent dies (a killed ``kedro run`` leaves no trainer; a rerun resumes)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
