"""Rubrics nodes: validate the raw prompts, write an instance rubric for each."""

from __future__ import annotations

import hashlib
import json
import logging

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from r2_write.config import parse_params
from r2_write.data_io import validate_prompts
from r2_write.llm.budget import check_failure_budget
from r2_write.roles import client_for
from r2_write.rubrics.writer import RubricWriterConfig, write_rubrics
from r2_write.tracking import mlflow_metrics

logger = logging.getLogger(__name__)


class RubricsParams(BaseModel):
    """``params:rubrics``."""

    model_config = ConfigDict(extra="forbid")

    num_prompts_per_pool: int | None = Field(None, ge=1, description="Write rubrics for the first N prompts of each pool only.")
    writer: RubricWriterConfig = Field(default_factory=RubricWriterConfig)


class PoolParams(BaseModel):
    """``params:prompt_pools``."""

    model_config = ConfigDict(extra="forbid")

    rl_fraction: float = Field(0.5, ge=0, le=1, description="Share of prompts in the RL pool.")
    seed: int = Field(0, description="Salt of the stable per-id assignment.")


def prepare_prompts(raw_prompts: pd.DataFrame, pools: dict) -> pd.DataFrame:
    """Validate the raw prompts and split them into disjoint ``sft`` and ``rl`` pools.

    Args:
        raw_prompts: Rows of data/01_raw/prompts.jsonl.
        pools: ``params:prompt_pools``.

    Returns:
        The validated prompts (id, domain, language, prompt, pool). A prompt's pool depends
        only on its id and the seed, so adding prompts never moves existing ones.
    """
    cfg = parse_params(PoolParams, pools, "prompt_pools")
    prompts = validate_prompts(raw_prompts, source="raw_prompts")
    u = [int(hashlib.sha1(f"{cfg.seed}:{i}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for i in prompts["id"]]
    prompts["pool"] = ["rl" if x < cfg.rl_fraction else "sft" for x in u]
    return prompts


def write_instance_rubrics(prompts: pd.DataFrame, params: dict, llm: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Generate five instance-specific criteria per prompt with the rubric writer.

    Args:
        prompts: Validated prompts.
        params: ``params:rubrics``.
        llm: ``params:llm`` (uses the ``rubric_writer`` role).

    Returns:
        (accepted, rejected, metrics): accepted rubrics (id, domain, criteria JSON,
        attempts); rejected prompts with the reason (never silently dropped); metrics.
    """
    cfg = parse_params(RubricsParams, params, "rubrics")
    chosen = prompts.groupby("pool", sort=False).head(cfg.num_prompts_per_pool) if cfg.num_prompts_per_pool else prompts
    client = client_for(llm, "rubric_writer")
    before = client.stats.copy()
    outcomes = write_rubrics(list(zip(chosen["id"], chosen["prompt"])), client, cfg.writer)
    domain = dict(zip(chosen["id"], chosen["domain"]))
    accepted = pd.DataFrame(
        [
            {"id": o.id, "domain": domain[o.id], "criteria": json.dumps([c.to_row() for c in o.criteria], ensure_ascii=False), "attempts": o.attempts}
            for o in outcomes
            if o.criteria is not None
        ],
        columns=["id", "domain", "criteria", "attempts"],
    )
    rejected = pd.DataFrame(
        [{"id": o.id, "domain": domain[o.id], "reason": o.error, "attempts": o.attempts} for o in outcomes if o.criteria is None],
        columns=["id", "domain", "reason", "attempts"],
    )
    logger.info("rubrics: %d accepted, %d rejected", len(accepted), len(rejected))
    # a run whose rubric writer (mostly) failed must not pass for a run with instance rubrics
    check_failure_budget(client.role, client.cfg.max_failed_share, len(rejected), len(outcomes), rejected["reason"],
                         "prompts left on the generic rubric")
    metrics = {
        "rubrics/accepted": float(len(accepted)),
        "rubrics/rejected": float(len(rejected)),
        **client.stats.since(before).as_metrics("rubrics/llm"),
    }
    return accepted, rejected, mlflow_metrics(metrics)
