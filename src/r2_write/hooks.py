"""Project hooks: no API key reaches MLflow; every run records the dataset versions it used.

``ApiKeyParameterHooks`` stops a run at once, before kedro-mlflow starts its MLflow run
(which records ``--params`` as a tag and every node's parameters as MLflow params), when an
``api_key_env`` parameter holds something other than the *name* of an environment
variable: the usual slip of pasting the key itself. The message names the parameter and
never shows its value.

``DatasetVersionHooks``: a ``kedro run`` is one MLflow run (kedro-mlflow starts it in
``before_pipeline_run``, before any dataset is loaded or saved). After each load or save of
a versioned dataset this hook tags that run ``dataset_version.<dataset name>`` = the version folder read or written
(e.g. ``dataset_version.synthesis.trajectories`` = ``2026-11-25T10.00.00.000Z``), so a run
pinned with ``--load-versions`` can be traced back to its exact inputs in the MLflow UI.
Nothing is logged when no MLflow run is active (tracking disabled, or a plain
``SequentialRunner`` in tests).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset

from r2_write.config import ConfigError

logger = logging.getLogger(__name__)

TAG_PREFIX = "dataset_version."
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ApiKeyParameterHooks:
    """Refuse to start a run whose parameters hold a key where an env-variable name belongs."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        bad = [path for path, value in _api_key_envs(context.params) if value is not None
               and not (isinstance(value, str) and _ENV_NAME.fullmatch(value))]
        if bad:
            raise ConfigError(
                f"parameter '{bad[0]}' must be the NAME of an environment variable holding the API key "
                "(e.g. OPENAI_API_KEY), not the key itself; the value given is not shown. "
                "Export the key (export OPENAI_API_KEY=...) and pass its name."
            )


def _api_key_envs(params: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every ``(dotted path, value)`` whose last key is ``api_key_env``."""
    out = []
    if isinstance(params, dict):
        for k, v in params.items():
            sub = f"{path}.{k}" if path else str(k)
            out += [(sub, v)] if k == "api_key_env" else _api_key_envs(v, sub)
    elif isinstance(params, list):
        for i, v in enumerate(params):
            out += _api_key_envs(v, f"{path}.{i}")
    return out


class DatasetVersionHooks:
    """Tag the active MLflow run with the versions of the datasets a run loads and saves."""

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        self._record(dataset_name, saved=False)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        self._record(dataset_name, saved=True)

    def _record(self, name: str, saved: bool) -> None:
        import mlflow

        if self._catalog is None or mlflow.active_run() is None:
            return
        dataset = self._catalog.get(name)
        if not isinstance(dataset, AbstractVersionedDataset):
            return
        try:
            version = dataset.resolve_save_version() if saved else dataset.resolve_load_version()
        except Exception as exc:  # noqa: BLE001 - bookkeeping must never fail a run
            logger.warning("could not resolve the version of %s: %s", name, exc)
            return
        if version:
            mlflow.set_tag(f"{TAG_PREFIX}{name}", version)


class StageTimingHooks:
    """Wall time and model calls of each stage (registered pipeline) of a run, as MLflow metrics.

    Node times are summed per registered pipeline (``rubrics``, ``synthesis``, ..., the stage
    whose pipeline holds the node) and logged after every node to the active run as
    ``time/<pipeline>``, so a run that fails still records the stages it finished; ``time/total``
    is the sum. Beside them, ``calls/<pipeline>`` and ``cache_hits/<pipeline>``: the model calls
    and response-cache hits of every LLM client in the Kedro process during the stage's nodes
    (:data:`r2_write.llm.client.PROCESS_CALLS`; calls made inside launched training processes are
    not seen). The end of the run logs one summary line. Nothing goes to MLflow when no run is active.
    """

    def __init__(self) -> None:
        self._stage_of: dict[str, str] = {}
        self._started: dict[str, tuple[float, int, int]] = {}
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.cache_hits: dict[str, int] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        from kedro.framework.project import pipelines

        self._stage_of, self._started, self.seconds, self.calls, self.cache_hits = {}, {}, {}, {}, {}
        for name, pipeline in pipelines.items():
            if name != "__default__":
                for node in pipeline.nodes:
                    self._stage_of.setdefault(node.name, name)

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        from r2_write.llm.client import PROCESS_CALLS

        self._started[node.name] = (time.perf_counter(), PROCESS_CALLS["calls"], PROCESS_CALLS["cache_hits"])

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        import mlflow

        from r2_write.llm.client import PROCESS_CALLS

        started = self._started.pop(node.name, None)
        if started is None:
            return
        t0, calls0, hits0 = started
        stage = self._stage_of.get(node.name, "other")
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
        self.calls[stage] = self.calls.get(stage, 0) + PROCESS_CALLS["calls"] - calls0
        self.cache_hits[stage] = self.cache_hits.get(stage, 0) + PROCESS_CALLS["cache_hits"] - hits0
        if mlflow.active_run() is not None:
            mlflow.log_metrics({f"time/{stage}": round(self.seconds[stage], 3),
                                "time/total": round(sum(self.seconds.values()), 3),
                                f"calls/{stage}": self.calls[stage], f"cache_hits/{stage}": self.cache_hits[stage],
                                "calls/total": sum(self.calls.values())})

    @hook_impl
    def after_pipeline_run(self) -> None:
        if self.seconds:
            parts = ", ".join(f"{stage} {secs:.1f} s ({self.calls.get(stage, 0)} model calls)"
                              for stage, secs in self.seconds.items())
            logger.info("time by stage (MLflow time/<pipeline>): %s; total %.1f s", parts, sum(self.seconds.values()))
