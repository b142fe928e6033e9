"""Pipeline-test fixtures: 3-row inputs and ``params:llm`` routed to the scripted fake client."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset

from tests.fakes import FakeBackend, default_respond, make_client, role_of, user_text


def improving_respond(conv, sampling):
    """Judge gives 5 to a first draft and 8 to a revision: the first step always raises the score."""
    if role_of(conv) == "judge":
        response = user_text(conv).split("[Response]")[1]
        return '{"score": %d, "reason": "r"}' % (8 if "Revised" in response else 5)
    return default_respond(conv, sampling)


@pytest.fixture
def fake_llm(monkeypatch):
    """Every role's client (``r2_write.roles.get_client``) is one scripted fake client."""
    client = make_client(FakeBackend(respond=improving_respond))
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, **kw: client)
    return client


@pytest.fixture
def llm_params() -> dict:
    role = {"backend": "transformers", "model": "fake-model", "cache_path": None}
    return {r: dict(role) for r in ("writer", "rubric_writer", "judge", "policy")}


@pytest.fixture
def dummy_prompts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["p1", "p2", "p3"],
            "domain": ["Education", "Finance & Business", "Literature & Arts"],
            "language": ["en", "en", "zh"],
            "prompt": ["Explain tides to children.", "Write a cost memo.", "写一首秋天的诗。"],
        }
    )


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release: lets a test read intermediate outputs."""

    def _release(self) -> None:
        pass


def memory_catalog(data: dict, keep: tuple[str, ...] = ()) -> DataCatalog:
    """A catalog holding ``data`` in memory; ``keep`` names intermediates to read after the run."""
    catalog = DataCatalog()
    for name, value in data.items():
        catalog[name] = value
    for name in keep:
        catalog[name] = KeptMemoryDataset()
    return catalog
