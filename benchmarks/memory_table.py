"""Per-GPU memory of the paper-scale training stages, computed from model configs.

Prints a markdown table: for each model (Qwen2.5-0.5B, Qwen2.5-7B, Llama-3.1-8B, written below
as the ``config.json`` fields that matter: there is no model hub here) and each stage (SFT,
PPO with the separate critic, GRPO), the GiB one of ``--gpus`` GPUs holds under FSDP full
shard or ZeRO-3 (``conf/accelerate/fsdp.yaml`` / ``zero3.yaml``), at the sequence lengths and
batch sizes of ``conf/paper`` (read from its YAML, so the table follows the configuration).

    python benchmarks/memory_table.py                 # 8 x 80 GB, conf/paper
    python benchmarks/memory_table.py --gpus 16 --gpu-gb 141

What is counted (bytes; P = parameters of a model, N = GPUs, b = micro-batch rows per GPU):

- trained model states, sharded: 16 P / N. FSDP2 with bf16 mixed precision keeps fp32
  parameters (4), fp32 gradients (4) and AdamW's two fp32 moments (8); ZeRO-3 keeps bf16
  parameters (2), bf16 gradients (2), fp32 master weights (4) and the moments (8): 16 both.
  PPO trains two models: the actor (P) and the separate critic (the backbone without LM head
  plus a value head). SFT and GRPO train the policy.
- frozen reference (PPO and GRPO, KL > 0): sharded like the policy; fp32 (4 P / N) as
  ``rl/model.py`` loads it, bf16 (2 P / N) in TRL's GRPO.
- gathered layers: FSDP/ZeRO-3 all-gather one decoder layer at a time in bf16, two with
  prefetch: 2 x 2 x layer parameters.
- vLLM (``use_vllm``, colocate mode, tensor parallel 1): a full bf16 copy of the policy per GPU
  (2 P) plus the KV cache of the rollouts this GPU samples: 2 (K and V) x layers x KV heads x
  head dim x 2 bytes per token, for its share of the batch at prompt + completion length.
  vLLM reserves ``vllm_gpu_memory_utilization`` x GPU memory for both (shown in the notes).
- activations with activation checkpointing, bf16: the input of every decoder layer kept
  (2 H bytes per token per layer) plus one layer recomputed in backward (its attention and MLP
  intermediates: 2 x (6 H + 2 kv + 3 I) bytes per token; flash/SDPA attention, no s^2 term).
- logits: the loss needs the vocabulary logits of every trained token; in bf16 plus the fp32
  copy the log-softmax takes: 6 V bytes per token, over one tile of TRL's fused LM-head loss for
  SFT (``sft.lm_head_chunk_size`` rows) and GRPO (TRL 1.16's 32768 rows of the micro-batch's
  completions), and one chunk of ``ppo.logits_chunk_size`` response tokens for the own PPO loop.

Not counted: CUDA context and allocator fragmentation (a few GiB), the optimizer's temporary
buffers, the judge (an API in conf/paper). Peak is the sum: the terms are live together during
the update (vLLM's reservation stays on the GPU in colocate mode unless it sleeps).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
ROOT = Path(__file__).resolve().parents[1]

# config.json fields of the published checkpoints (hidden_size, intermediate_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, vocab_size, tie_word_embeddings; Qwen2 has q/k/v biases)
MODELS: dict[str, dict] = {
    "Qwen2.5-0.5B": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "Qwen2.5-7B": {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "tie_word_embeddings": False},
    "Llama-3.1-8B": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                     "tie_word_embeddings": False},
}


@dataclass
class Shape:
    """The sizes of a decoder-only transformer that memory depends on."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool

    @classmethod
    def from_config(cls, config: dict) -> "Shape":
        return cls(config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
                   config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"],
                   bool(config.get("tie_word_embeddings", False)), config.get("model_type") == "qwen2")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        h, kv = self.hidden, self.kv_dim
        attention = h * h + 2 * h * kv + h * h + ((h + 2 * kv) if self.qkv_bias else 0)
        return attention + 3 * h * self.intermediate + 2 * h  # + gate/up/down, two RMSNorms

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        return self.embedding_params + self.layers * self.layer_params + self.hidden + head

    @property
    def backbone_params(self) -> int:
        """The separate critic: the model without its LM head, plus a value head."""
        return self.embedding_params + self.layers * self.layer_params + self.hidden + self.hidden + 1

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_dim * 2

    def activation_bytes(self, tokens: int) -> int:
        kept = self.layers * 2 * self.hidden * tokens
        recomputed = 2 * (6 * self.hidden + 2 * self.kv_dim + 3 * self.intermediate) * tokens
        return kept + recomputed

    def logits_bytes(self, tokens: int) -> int:
        return 6 * self.vocab * tokens


def paper_settings(conf_dir: Path = ROOT / "conf" / "paper") -> dict[str, dict]:
    """The batch and length settings of conf/paper that memory depends on (its YAML, read directly)."""
    import yaml

    def load(name: str) -> dict:
        return yaml.safe_load((conf_dir / f"parameters_{name}.yml").read_text())

    sft, ppo, grpo = load("sft")["sft"], load("ppo")["ppo"], load("grpo")["grpo"]
    return {
        "sft": {"micro": sft["per_device_train_batch_size"], "tokens": sft["max_length"],
                "tile": sft.get("lm_head_chunk_size") or 32768},  # TRL's fused LM-head loss: rows per tile
        "ppo": {"micro": ppo.get("micro_batch_size") or ppo["mini_batch_size"], "batch": ppo["batch_size"],
                "prompt": ppo["max_prompt_length"], "response": ppo["max_new_tokens"],
                "vllm_util": ppo.get("vllm_gpu_memory_utilization", 0.3), "use_vllm": ppo.get("use_vllm", False),
                "chunk": ppo.get("logits_chunk_size", 1024), "vllm_sleep": ppo.get("vllm_sleep_mode", False)},
        "grpo": {"micro": grpo["per_device_train_batch_size"], "prompt": ppo["max_prompt_length"],
                 "response": grpo["max_completion_length"], "use_vllm": grpo.get("use_vllm", False),
                 "vllm_util": grpo.get("vllm_gpu_memory_utilization", 0.3)},
    }


def stage_rows(name: str, shape: Shape, gpus: int, settings: dict, micro: int | None = None) -> list[dict]:
    """One row per stage: bytes per GPU of each term and the total (``micro``: override the micro-batch)."""
    gathered = 2 * 2 * shape.layer_params
    rows = []

    s = settings["sft"]
    m = micro or s["micro"]
    rows.append({"model": name, "stage": "SFT", "micro": m, "states": 16 * shape.params / gpus, "reference": 0,
                 "critic": 0, "gathered": gathered, "vllm": 0,
                 "activations": shape.activation_bytes(m * s["tokens"]),
                 "logits": shape.logits_bytes(min(m * s["tokens"], s["tile"])),
                 "shape": f"{m} x {s['tokens']} tok"})

    p = settings["ppo"]
    m = micro or p["micro"]
    rollouts_per_gpu = -(-p["batch"] // gpus)
    seq = p["prompt"] + p["response"]
    # the own loop's update: vLLM asleep (vllm_sleep_mode) holds nothing; logits in chunks (logits_chunk_size rows)
    awake = p["use_vllm"] and not p["vllm_sleep"]
    vllm = (2 * shape.params + rollouts_per_gpu * seq * shape.kv_bytes_per_token) if awake else 0
    rows.append({"model": name, "stage": "PPO (separate critic)", "micro": m, "states": 16 * shape.params / gpus,
                 "reference": 4 * shape.params / gpus, "critic": 16 * shape.backbone_params / gpus,
                 "gathered": 2 * gathered, "vllm": vllm, "activations": shape.activation_bytes(m * seq),
                 "logits": shape.logits_bytes(m * min(p["chunk"] or p["response"], p["response"])),
                 "shape": f"{m} x {seq} tok, {rollouts_per_gpu} rollouts/GPU"})

    g = settings["grpo"]
    m = micro or g["micro"]
    seq = g["prompt"] + g["response"]
    vllm = (2 * shape.params + g["micro"] * seq * shape.kv_bytes_per_token) if g["use_vllm"] else 0
    rows.append({"model": name, "stage": "GRPO", "micro": m, "states": 16 * shape.params / gpus,
                 "reference": 2 * shape.params / gpus, "critic": 0, "gathered": gathered, "vllm": vllm,
                 "activations": shape.activation_bytes(m * seq),
                 "logits": shape.logits_bytes(min(m * g["response"], 32768)),  # TRL's fused LM head: one tile
                 "shape": f"{m} x {seq} tok"})
    for row in rows:
        row["total"] = sum(row[k] for k in ("states", "reference", "critic", "gathered", "vllm", "activations", "logits"))
    return rows


def largest_fitting_micro(name: str, shape: Shape, gpus: int, settings: dict, limit_bytes: float) -> list[int]:
    """Per stage, the largest micro-batch (rows per forward, at most the configured one) under ``limit_bytes``; 0 if none."""
    configured = [r["micro"] for r in stage_rows(name, shape, gpus, settings)]
    best = [0] * len(configured)
    for m in range(1, max(configured) + 1):
        for i, row in enumerate(stage_rows(name, shape, gpus, settings, micro=m)):
            if m <= configured[i] and row["total"] <= limit_bytes:
                best[i] = m
    return best


def markdown(rows: list[dict], gpus: int, gpu_gb: float, strategy: str) -> str:
    cols = ["states", "reference", "critic", "gathered", "vllm", "activations", "logits", "total"]
    head = ["model (params)", "stage", "micro-batch per GPU", "weights+grads+AdamW", "reference", "critic states",
            "gathered layers", "vLLM weights+KV", "activations (ckpt)", "logits", "total GiB", f"fits {gpu_gb:g} GB",
            "largest micro-batch that fits"]
    lines = [f"Per GPU, {gpus} GPUs, {strategy} full shard, bf16 (GiB):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        fits = "yes" if r["total"] <= gpu_gb * 1e9 else "**no**"
        values = [f"{r[c] / GIB:.1f}" if r[c] else "-" for c in cols]
        lines.append(f"| {r['model']} ({r['params'] / 1e9:.2f}B) | {r['stage']} | {r['shape']} | "
                     + " | ".join(values) + f" | {fits} | {r['fitting_micro'] or 'none'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8, help="GPUs the states are sharded over (default 8)")
    parser.add_argument("--gpu-gb", type=float, default=80, help="memory of one GPU in GB (default 80)")
    parser.add_argument("--strategy", choices=["FSDP2", "ZeRO-3"], default="FSDP2",
                        help="label only: both keep 16 bytes of states per trained parameter")
    parser.add_argument("--conf", type=Path, default=ROOT / "conf" / "paper", help="conf/<env> with the lengths")
    args = parser.parse_args(argv)
    settings = paper_settings(args.conf)
    rows = []
    for name, config in MODELS.items():
        shape = Shape.from_config(config)
        fitting = largest_fitting_micro(name, shape, args.gpus, settings, args.gpu_gb * 1e9)
        for row, micro in zip(stage_rows(name, shape, args.gpus, settings), fitting):
            rows.append({**row, "params": shape.params, "fitting_micro": micro})
    table = markdown(rows, args.gpus, args.gpu_gb, args.strategy)
    p = settings["ppo"]
    notes = (f"\nvLLM (colocate) reserves vllm_gpu_memory_utilization x GPU = {p['vllm_util']:g} x {args.gpu_gb:g} GB "
             f"= {p['vllm_util'] * args.gpu_gb:.0f} GB for its weights and KV cache in PPO.")
    notes += (f"\nPPO's logits column counts one chunk of ppo.logits_chunk_size = {p['chunk']} rows (the own loop "
              "scores the response in chunks, recomputed in backward; unchunked a 25k-token response would need "
              "6 x vocab bytes per token, 21 GiB per row for a 152k vocabulary); with ppo.vllm_sleep_mode vLLM "
              "holds nothing during the update (measured own-loop memory: benchmarks/memory_own_loop.py).")
    out = table + "\n" + notes
    print(out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
