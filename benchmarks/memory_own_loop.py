"""Peak memory of the own PPO loop's scoring and update, and of an SFT step, measured on CPU at long lengths.

    python benchmarks/memory_own_loop.py                       # 2k/4k/8k tokens, the table of docs/results-memory.md
    python benchmarks/memory_own_loop.py --tokens 16384 --no-unchunked --no-sft   # one 16k row (slow: see below)

Model: the embedded SmolLM2-135M (``data/06_models/base_model``: vocab 49,152, hidden 576,
intermediate 1,536) cut to its first ``--layers`` decoder layers (default 1 of 30), fp32, with
gradient checkpointing as conf/paper trains. The cut keeps every per-token cost the chunking is
about (the vocabulary projection) at full size and makes a 16k-token update take minutes instead
of an hour on 2 CPU cores; the layers' own activations are counted per layer, so the result
extends to 30 layers (and to 7B/8B) by the arithmetic printed below the table.

Phases, each on one row of ``--prompt`` prompt tokens + T response tokens:

- ``scoring``: what the rollout computes after sampling, under ``no_grad``: the policy's
  response log-probs and values (:func:`r2_write.rl.model.response_scores`) and the reference's
  log-probs (:func:`~r2_write.rl.model.reference_logprobs`).
- ``update``: one PPO micro-batch: the same scoring with gradients plus entropy, a policy and
  value loss, and backward.
- ``sft``: one SFT step's loss and backward over prompt + T tokens: TRL 1.16's fused LM head
  (``trl.trainer.utils.add_fused_lm_head``, what SFTTrainer uses, chunked) against the model's
  plain forward with labels (full logits).

``chunked`` runs with ``logits_chunk_size`` (default 1024), ``unchunked`` with 0 (the whole
``[T, vocab]`` fp32 logits, as before issue 24), up to ``--unchunked-max`` tokens.

Method: peak resident set size (RSS) above the RSS just before the phase, sampled every
millisecond by a thread reading ``/proc/self/statm``. The script re-executes itself with glibc's
``MALLOC_MMAP_THRESHOLD_=65536`` so every tensor above 64 KiB is its own mapping and is returned to
the OS when freed (RSS then follows the live tensors instead of the allocator's high-water mark);
``malloc_trim`` and ``gc`` run before each phase. Model weights and the optimizer are loaded
before the baseline, so the deltas are activations, logits and (update) gradients.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
_MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


class PeakRSS:
    """Peak RSS above the value at entry, sampled every ``interval`` seconds by a background thread."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    @contextmanager
    def measure(self):
        gc.collect()
        _trim()
        base = self.rss()
        self.peak, self._stop = base, threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.rss())
                time.sleep(self.interval)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self.peak = max(self.peak, self.rss()) - base


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def load_model(path: Path, layers: int):
    """The embedded model cut to its first ``layers`` decoder layers, fp32, gradient checkpointing on."""
    import torch

    from r2_write.rl.model import load_causal_lm

    lm = load_causal_lm(path)
    lm.model.layers = lm.model.layers[:layers]
    lm.config.num_hidden_layers = layers
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return lm.to(torch.float32)


def ppo_phases(policy, ref, ids, att, context: int, chunk: int, meter: PeakRSS) -> dict[str, float]:
    """Peak MiB of the rollout's scoring (no grad) and of one update micro-batch (forward + backward)."""
    import torch

    from r2_write.rl.model import reference_logprobs, response_scores

    out = {}
    policy.eval()
    with meter.measure(), torch.no_grad():
        response_scores(policy, ids, att, context, 1.0, chunk)
        reference_logprobs(ref, ids, att, context, 1.0, chunk)
    out["scoring"] = meter.peak / MIB
    policy.train()
    policy.zero_grad(set_to_none=True)
    with meter.measure():
        logprobs, entropy, values = response_scores(policy, ids, att, context, 1.0, chunk, entropy=True)
        advantages = torch.linspace(-1, 1, logprobs.shape[1])
        loss = -(logprobs * advantages).mean() + 0.1 * (values.float() ** 2).mean()
        loss.backward()
        del logprobs, entropy, values, loss
    out["update"] = meter.peak / MIB
    policy.zero_grad(set_to_none=True)
    return out


def sft_phase(lm, ids, tiles: int | None, meter: PeakRSS) -> float:
    """Peak MiB of one SFT loss + backward over ``ids``: TRL's fused LM head in ``tiles``-row tiles, or full logits (None)."""
    import trl.trainer.utils as trl_utils

    lm.train()
    lm.zero_grad(set_to_none=True)
    default = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    with meter.measure():
        if tiles:
            trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = tiles  # what sft.lm_head_chunk_size sets
            try:
                loss = lm(input_ids=ids, labels=ids, fused_lm_head=True, use_cache=False).loss
                loss.backward()
            finally:
                trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = default
        else:
            loss = lm(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
        del loss
    lm.zero_grad(set_to_none=True)
    return meter.peak / MIB


def measure(args) -> list[dict]:
    import copy

    import torch
    from trl.trainer.utils import add_fused_lm_head

    from r2_write.rl.model import PolicyWithValue

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm = load_model(Path(args.model), args.layers)
    policy = PolicyWithValue(lm)
    ref = copy.deepcopy(lm).eval().requires_grad_(False)
    sft_lm = copy.deepcopy(lm)
    add_fused_lm_head(sft_lm, outputs=("log_probs",))
    vocab = lm.config.vocab_size
    meter = PeakRSS()
    rows = []
    for tokens in args.tokens:
        ids = torch.randint(0, vocab, (1, args.prompt + tokens), generator=torch.Generator().manual_seed(tokens))
        att = torch.ones_like(ids)
        for mode, chunk in (("chunked", args.chunk), ("unchunked", 0)):
            if mode == "unchunked" and (args.no_unchunked or tokens > args.unchunked_max):
                continue
            t0 = time.perf_counter()
            row = {"tokens": tokens, "mode": mode, **ppo_phases(policy, ref, ids, att, args.prompt, chunk, meter)}
            if not args.no_sft:
                row["sft"] = sft_phase(sft_lm, ids, args.chunk if mode == "chunked" else None, meter)
                if mode == "chunked" and tokens <= args.trl_default_max:
                    row["sft_trl_default"] = sft_phase(sft_lm, ids, 32768, meter)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(f"  {tokens} {mode}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items() if k not in ("tokens", "mode")),
                  file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], args) -> str:
    cols = ["scoring", "update"] + ([] if args.no_sft else ["sft", "sft_trl_default"])
    names = {"sft_trl_default": "sft, TRL's 32768-row tiles"}
    lines = ["| response tokens | logits | " + " | ".join(f"{names.get(c, c)} peak MiB" for c in cols) + " | seconds |",
             "|---:|---|" + "---:|" * (len(cols) + 1)]
    for r in rows:
        lines.append(f"| {r['tokens']} | {r['mode']} | " + " | ".join(f"{r[c]:.0f}" if c in r else "-" for c in cols)
                     + f" | {r['seconds']:.0f} |")
    return "\n".join(lines)


def slopes(rows: list[dict], mode: str, col: str) -> float | None:
    """MiB per 1k response tokens between the shortest and longest measured lengths (linear growth check)."""
    pts = sorted((r["tokens"], r[col]) for r in rows if r["mode"] == mode and col in r)
    if len(pts) < 2:
        return None
    (t0, m0), (t1, m1) = pts[0], pts[-1]
    return (m1 - m0) / (t1 - t0) * 1000


# ----------------------------------------------------------------------------- extrapolation to 7B/8B on one GPU


def per_token_bytes(rows: list[dict], mode: str, col: str) -> float | None:
    """Measured growth in bytes per response token (``slopes`` in bytes)."""
    s = slopes(rows, mode, col)
    return None if s is None else s * MIB / 1000


def extrapolate(rows: list[dict], args, measured_shape, tokens: int = 25088, prompt: int = 2048) -> str:
    """7B/8B at ``prompt + tokens`` on one 80 GB and one 141 GB GPU, by the arithmetic below, calibrated on ``rows``.

    Activations (gradient checkpointing, bf16): every decoder layer's input and the final
    hidden states are kept (H x (L + 2) values per token, counted exactly) and one layer is
    recomputed at a time in backward (u = 6H + 2 kv + 3I values per token, the count
    benchmarks/memory_table.py uses, times a factor ``f``). ``f`` is calibrated per stage on
    the measured chunked growth per token (fp32, ``--layers`` = k layers):
    f = (growth - 4 H (k + 2)) / (4 u). Logits: ``m`` fp32 [rows, vocab] copies
    live at the peak, m = (unchunked - chunked growth per token) / (4 V) measured; chunked they
    cover ``--chunk`` rows, unchunked every response token. States of the own loop's update
    (one GPU, no sharding): actor and separate critic trained with AdamW under bf16 autocast
    (fp32 weights, grads, two moments: 16 bytes per parameter each), fp32 reference (4 P); vLLM
    asleep (``vllm_sleep_mode``) during the update.
    """
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from memory_table import GIB, MODELS, Shape

    chunked, unchunked = per_token_bytes(rows, "chunked", "update"), per_token_bytes(rows, "unchunked", "update")
    if chunked is None or unchunked is None:
        return "(extrapolation needs chunked and unchunked update rows at two lengths or more)"
    e = measured_shape
    unit = lambda sh: 6 * sh.hidden + 2 * sh.kv_dim + 3 * sh.intermediate  # noqa: E731
    calibrate = lambda growth: (growth - 4 * e.hidden * (args.layers + 2)) / (4 * unit(e))  # noqa: E731
    f = calibrate(chunked)
    sft_growth = per_token_bytes(rows, "chunked", "sft")
    f_sft = calibrate(sft_growth) if sft_growth is not None else f
    m = (unchunked - chunked) / (4 * e.vocab)
    sft_tiles = [r for r in rows if "sft_trl_default" in r]
    m_sft = None
    if sft_tiles:  # fp32 [rows, vocab] copies of TRL's one-tile loss: (default tiles - small tiles) / (rows x 4V)
        r = sft_tiles[-1]
        m_sft = (r["sft_trl_default"] - r["sft"]) * MIB / ((r["tokens"] + args.prompt) * 4 * e.vocab)
    seq = prompt + tokens
    lines = [f"Calibration: f = {f:.2f} (PPO update), {f_sft:.2f} (SFT step) of a recomputed layer's counted "
             f"activations per token; m = {m:.1f} fp32 logits copies per response token in the update"
             + (f", {m_sft:.1f} in TRL's SFT loss" if m_sft else "") + ".",
             "", f"One GPU, {prompt} + {tokens} = {seq} tokens, one sequence per micro-batch, bf16 autocast "
             "(GiB; fits = states + activations + logits + 2 GiB CUDA context):", "",
             "| model | stage | states | activations | logits chunked | logits unchunked | total chunked "
             "| fits 80 GB | fits 141 GB | total with states offloaded (fsdp_offload_params) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for name in ("Qwen2.5-7B", "Llama-3.1-8B"):
        sh = Shape.from_config(MODELS[name])
        act = lambda factor: 2 * (sh.hidden * (sh.layers + 2) + factor * unit(sh)) * seq  # noqa: E731
        stages = {"PPO update": (16 * sh.params + 16 * sh.backbone_params + 4 * sh.params, act(f),
                                 m * args.chunk * 4 * sh.vocab, m * tokens * 4 * sh.vocab)}
        if m_sft:
            stages["SFT step"] = (16 * sh.params, act(f_sft), m_sft * 2048 * 4 * sh.vocab,
                                  m_sft * min(seq, 32768) * 4 * sh.vocab)
        for stage, (states, act, lc, lu) in stages.items():
            total = states + act + lc + 2 * GIB
            offloaded = act + lc + 2 * GIB + 2 * 2 * sh.layer_params * 2  # + two gathered bf16 layers
            lines.append(f"| {name} | {stage} | {states / GIB:.0f} | {act / GIB:.1f} | {lc / GIB:.1f} | {lu / GIB:.1f} "
                         f"| {total / GIB:.0f} | {'yes' if total <= 80e9 else 'no'} | {'yes' if total <= 141e9 else 'no'} "
                         f"| {offloaded / GIB:.1f} |")
    lines.append("")
    lines.append("SFT logits: chunked = sft.lm_head_chunk_size 2048-row tiles, unchunked = TRL 1.16's default "
                 "32768-row tile (one tile per sequence up to 32k tokens).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "06_models" / "base_model"))
    parser.add_argument("--layers", type=int, default=1, help="decoder layers kept (the model has 30)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens before the response")
    parser.add_argument("--chunk", type=int, default=1024, help="logits_chunk_size of the chunked runs")
    parser.add_argument("--unchunked-max", type=int, default=4096, help="longest response measured unchunked")
    parser.add_argument("--trl-default-max", type=int, default=2048,
                        help="longest response whose SFT step is also measured with TRL's default 32768-row tiles")
    parser.add_argument("--no-unchunked", action="store_true")
    parser.add_argument("--no-sft", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-rows", help="also write the measured rows to this JSON file")
    parser.add_argument("--from-rows", help="print the table and arithmetic of rows saved by --save-rows (no measuring)")
    args = parser.parse_args(argv)
    if os.environ.get(_MMAP_ENV) is None and argv is None:  # every large tensor its own mapping (see the docstring)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, _MMAP_ENV: "65536"})
    sys.path.insert(0, str(ROOT / "src"))
    rows = json.loads(Path(args.from_rows).read_text()) if args.from_rows else measure(args)
    if args.save_rows:
        Path(args.save_rows).write_text(json.dumps(rows))
    out = [f"{datetime.date.today().isoformat()}, `python {' '.join(['benchmarks/memory_own_loop.py', *sys.argv[1:]])}`"
           f" ({args.layers} of 30 layers, fp32, CPU, {args.threads} threads):", "", table(rows, args), ""]
    for mode in ("chunked", "unchunked"):
        for col in ("scoring", "update", "sft"):
            s = slopes(rows, mode, col)
            if s is not None:
                out.append(f"- {mode} {col}: {s:.0f} MiB per 1k response tokens")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from memory_table import Shape

    config = json.loads((Path(args.model) / "config.json").read_text())
    out += ["", extrapolate(rows, args, Shape.from_config(config))]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
