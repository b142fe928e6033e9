"""Per-GPU memory of PPO on veRL (actor, critic, reference, vLLM rollout), from the arithmetic.

An estimate to choose settings with, not a measurement (nothing here has run on a GPU). The
model (all sizes in bytes, ``P`` parameters, ``N`` GPUs, ``T`` tokens per GPU in a micro-batch,
the token budget ``ppo_max_token_len_per_gpu``):

* actor and critic under FSDP full shard, fp32 master weights (veRL's ``model_dtype: fp32``):
  parameters ``4P/N`` and gradients ``4P/N`` each; AdamW states ``8P/N`` each, 0 when
  ``optimizer_offload``; parameters 0 when ``param_offload`` (gathered one layer at a time);
* reference: bf16 ``2P/N``, 0 with ``ref_param_offload``;
* update activations with gradient checkpointing: the layer inputs ``T x hidden x layers x 2``
  plus one layer recomputed ``T x (10 hidden + 3 intermediate) x 2``;
* log-probs: unfused, the logits ``T x vocab`` in bf16, their fp32 log-softmax and its gradient
  (``10 T vocab``); fused kernels keep one 2048-token chunk of that;
* rollout: vLLM takes ``gpu_memory_utilization`` of the GPU while it samples; with
  ``free_cache_engine`` (sleep mode) it frees weights and KV cache for the update.

The peak is the larger of the rollout phase (resident training state + vLLM) and the update
phase (resident training state + activations + log-probs; vLLM asleep).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic needs of a model."""

    name: str
    params: float
    hidden: int
    layers: int
    intermediate: int
    vocab: int


MODELS = {
    "7B": ModelShape("Qwen2.5-7B", 7.62e9, 3584, 28, 18944, 152064),
    "8B": ModelShape("Llama-3.1-8B", 8.03e9, 4096, 32, 14336, 128256),
}


@dataclass(frozen=True)
class Settings:
    """The veRL scale settings the table varies (``ppo.verl``, ``ppo.vllm_gpu_memory_utilization``)."""

    token_budget: int = 16384
    optimizer_offload: bool = True
    param_offload: bool = False
    ref_param_offload: bool = True
    use_fused_kernels: bool = True
    free_cache_engine: bool = True
    gpu_memory_utilization: float = 0.3
    gpu_gib: float = 80.0


def verl_memory(model: ModelShape, n_gpus: int, s: Settings) -> dict[str, float]:
    """Per-GPU memory (GiB) of each part and the two phases' peaks.

    >>> m = verl_memory(MODELS["7B"], 8, Settings())
    >>> round(m["actor_states"], 2), round(m["critic_states"], 2), m["optimizer"], m["vllm_update"]
    (7.1, 7.1, 0.0, 0.0)
    """
    p, n = model.params, n_gpus
    weights = 0.0 if s.param_offload else 4 * p / n
    states = weights + 4 * p / n  # fp32 shard + its gradient (gradients live during the update only)
    optimizer = 0.0 if s.optimizer_offload else 2 * 8 * p / n  # actor and critic
    ref = 0.0 if s.ref_param_offload else 2 * p / n
    t = s.token_budget
    activations = t * model.hidden * model.layers * 2 + t * (10 * model.hidden + 3 * model.intermediate) * 2
    logits_rows = min(t, 2048) if s.use_fused_kernels else t
    logprobs = 10 * logits_rows * model.vocab
    vllm = s.gpu_memory_utilization * s.gpu_gib * GIB
    out = {
        "actor_states": states / GIB,
        "critic_states": states / GIB,
        "optimizer": optimizer / GIB,
        "reference": ref / GIB,
        "activations": activations / GIB,
        "logprobs": logprobs / GIB,
        "vllm_rollout": vllm / GIB,
        "vllm_update": 0.0 if s.free_cache_engine else vllm / GIB,
    }
    resident_rollout = 2 * weights + optimizer + ref  # gradients freed between updates
    resident_update = 2 * states + optimizer + ref
    out["rollout_peak"] = (resident_rollout + vllm) / GIB
    out["update_peak"] = (resident_update + activations + logprobs) / GIB + out["vllm_update"]
    out["peak"] = max(out["rollout_peak"], out["update_peak"])
    out["fits"] = float(out["peak"] <= s.gpu_gib * 0.9)  # 10% for the CUDA context, NCCL buffers, fragmentation
    return out


def memory_table(settings: dict[str, Settings] | None = None, gpus: tuple[int, ...] = (8, 16)) -> str:
    """A Markdown table: one row per model x GPU count x settings variant."""
    settings = settings or {
        "paper (conf/paper)": Settings(),
        "no fused log-probs": Settings(use_fused_kernels=False),
        "no offload, vLLM awake": Settings(optimizer_offload=False, ref_param_offload=False, free_cache_engine=False),
    }
    head = ("| model | GPUs | settings | actor+critic states | optimizer | activations | log-probs | vLLM rollout/update "
            "| rollout peak | update peak | fits 80 GB |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for key, model in MODELS.items():
        for n in gpus:
            for label, s in settings.items():
                m = verl_memory(model, n, s)
                lines.append(
                    f"| {key} ({model.name}) | {n} x 80 GB | {label} | {m['actor_states'] + m['critic_states']:.1f} | "
                    f"{m['optimizer']:.1f} | {m['activations']:.1f} | {m['logprobs']:.1f} | "
                    f"{m['vllm_rollout']:.0f} / {m['vllm_update']:.0f} | {m['rollout_peak']:.1f} | "
                    f"{m['update_peak']:.1f} | {'yes' if m['fits'] else 'no'} |")
    return "\n".join(lines)
