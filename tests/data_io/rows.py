"""Rows and files for the data_io tests: valid rows with overrides, and a JSON-lines writer."""

from __future__ import annotations

import json
from pathlib import Path

from r2_write.data_io import load_deepresearchgym, load_prompts, load_writingbench
from r2_write.rubrics.schema import BANDS

LOADERS = {"prompts": load_prompts, "writingbench": load_writingbench, "deepresearchgym": load_deepresearchgym}


def _criterion(name: str = "Clarity", **override) -> dict:
    row = {
        "name": name,
        "criteria_description": f"How well the text does {name.lower()}.",
        **{band: f"band {band} description" for band in BANDS},
    }
    row.update(override)
    return row


def _wb_row(index=1, key="criteria", **override) -> dict:
    row = {
        "index": index,
        "domain1": "Education",
        "domain2": "Lesson Plans",
        "query": "Write a lesson plan on fractions for grade five.",
        key: [_criterion(n) for n in ("Clarity", "Structure", "Accuracy", "Engagement", "Format")],
    }
    row.update(override)
    return row


def _prompt(pid="p1", **override) -> dict:
    row = {"id": pid, "domain": "Education", "language": "en", "prompt": "Explain ratios to a child."}
    row.update(override)
    return row


def _drg(qid="7", n=3, **override) -> dict:
    row = {
        "id": qid,
        "query": "why do tides happen",
        "key_points": [{"point_number": i + 1, "point_content": f"Key point {i + 1}."} for i in range(n)],
    }
    row.update(override)
    return row


def _write(tmp_path: Path, lines: list, name: str = "data.jsonl") -> Path:
    """Write rows (dicts are JSON-encoded, str/bytes written verbatim) as a JSON-lines file."""
    out = []
    for line in lines:
        if isinstance(line, bytes):
            out.append(line)
        elif isinstance(line, str):
            out.append(line.encode("utf-8"))
        else:
            out.append(json.dumps(line, ensure_ascii=False).encode("utf-8"))
    path = tmp_path / name
    path.write_bytes(b"\n".join(out) + b"\n")
    return path
