"""Persistent SQLite response cache: a repeated or interrupted run never pays twice."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_FINGERPRINTS: dict[tuple, str] = {}  # model_identity's memo: (directory, file stamps) -> content hash


def cache_key(**parts: Any) -> str:
    """Stable hash of the parts of a call (backend, model, messages, sampling, seed...).

    Secrets never enter a key: callers pass only what determines the answer.

    >>> cache_key(model="m", messages=[{"role": "user", "content": "hi"}]) == cache_key(
    ...     messages=[{"role": "user", "content": "hi"}], model="m")
    True
    """
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def model_identity(model: str) -> str:
    """How cache keys name a model: a local checkpoint directory by its content, anything else by its name.

    Versioned checkpoints (``data/06_models/sft/<version>/sft``) hold the same weights under a
    new path on every run, so a path would make a rerun miss every cached answer; a model
    retrained in place must not hit the old model's answers either. The hash covers every
    file's name and bytes (about 0.5 s for the embedded 135M model) and is memoised per
    process on the files' paths, sizes and modification times.

    >>> model_identity("gpt-4o-mini")
    'gpt-4o-mini'
    """
    root = Path(model)
    if not (root / "config.json").is_file():
        return model
    files = {p.relative_to(root).as_posix(): p.stat() for p in sorted(root.rglob("*")) if p.is_file()}
    stamp = (str(root.resolve()), tuple((name, st.st_size, st.st_mtime_ns) for name, st in files.items()))
    if stamp not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for name, st in files.items():
            digest.update(f"{name}\0{st.st_size}\0".encode())
            with (root / name).open("rb") as f:
                while block := f.read(1 << 24):
                    digest.update(block)
        _FINGERPRINTS[stamp] = "sha256:" + digest.hexdigest()
    return _FINGERPRINTS[stamp]


class ResponseCache:
    """A key -> JSON value store in one SQLite file (WAL mode, safe across threads).

    Each ``put_many`` is one transaction, so a kill leaves either the whole batch or none.
    Commits survive a killed process (WAL, ``synchronous=NORMAL``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process being killed (only an OS crash or power
        # loss can undo the last commits); no fsync per commit, so committing each answer
        # as it arrives costs ~0.05 ms instead of a few ms
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.commit()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Return the cached values for those of ``keys`` present, counting hits and misses."""
        found: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                rows = self._conn.execute(
                    f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update({k: json.loads(v) for k, v in rows})
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        """Store values in one transaction."""
        if not items:
            return
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()],
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._conn.close()
