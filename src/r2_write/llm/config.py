"""Typed configuration for LLM backends and sampling, validated at load."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BACKENDS = ("transformers", "openai", "vllm")


class SamplingParams(BaseModel):
    """Sampling parameters shared by every backend (and part of every cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(256, ge=1, description="Completion length limit in tokens.")
    seed: int = Field(0, description="Sampling seed; with the same inputs, same outputs.")


class LLMConfig(BaseModel):
    """Which model answers, through which backend, and how calls are made.

    Example (``conf/base/parameters.yml``)::

        writer_llm:
          backend: openai
          model: gpt-4.1-mini
          base_url: https://api.openai.com/v1
          api_key_env: OPENAI_API_KEY
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["transformers", "openai", "vllm"] = Field(
        "transformers", description="transformers (local, default), openai (any compatible endpoint), vllm."
    )
    model: str = Field("data/06_models/base_model", description="Model directory or served model name.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint URL (openai backend).")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the API key (never the key itself)."
    )
    max_concurrency: int = Field(8, ge=1, description="Concurrent requests in flight (openai backend).")
    max_retries: int = Field(5, ge=0, description="Retries per request on timeouts, 429 and 5xx.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    backoff_base_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry, with jitter.")
    backoff_max_s: float = Field(30.0, ge=0, description="Cap on one retry delay.")
    batch_size: int = Field(8, ge=1, description="Prompts per generate() batch (local backends).")
    device: str = Field("auto", description="torch device for the transformers backend: auto, cpu, cuda.")
    dtype: str = Field("auto", description="torch dtype: auto, float32, bfloat16, float16.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model (vllm backend).")
    cache_path: str | None = Field(
        "data/cache/llm_cache.sqlite", description="SQLite response cache; null disables caching."
    )
    preflight: bool = Field(
        True, description="Check the endpoint once (GET /models) before the first uncached request (openai backend)."
    )
    circuit_breaker_failures: int = Field(
        8, ge=0, description="Stop a batch after this many consecutive connection-level failures (0: never)."
    )
    max_failed_share: float = Field(
        0.2, ge=0, le=1, description="A node fails when more than this share of its calls or items failed for good."
    )

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, v: str | None) -> str | None:
        if v is not None and not v.replace("_", "").isalnum():
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key"
            )
        return v
