"""Run under ``accelerate launch --config_file conf/accelerate/fsdp.yaml`` on CPU (gloo): how FSDP prepares our models.

    python -m accelerate.commands.launch --config_file conf/accelerate/fsdp.yaml --num_processes 2 \\
        tests/training/fsdp_probe.py MODEL_DIR OUT_JSON

Prepares the actor and the separate critic as :func:`r2_write.rl.trainer.train` does
(``load_policy`` / ``load_critic`` / ``accelerator.prepare``; the reference with
``_shard_frozen``) and writes, from each process, their :func:`~r2_write.rl.trainer.sharding_summary`
plus the chunked scores of one batch through the sharded actor and reference next to those of an
unsharded copy, and whether backward reached every shard. accelerate 1.16 runs FSDP on GPUs only;
as ``R2_WRITE_FSDP_ON_CPU`` does for the launched trainer, the accelerator state is put on FSDP
for CPU processes (torch's ``fully_shard`` runs on gloo).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(model_dir: str, out_json: str) -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    from r2_write.rl.model import Actor, load_causal_lm, load_critic, load_policy, reference_logprobs, response_scores
    from r2_write.rl.ppo_config import PPOConfig
    from r2_write.rl.trainer import _shard_frozen, sharding_summary

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    state = AcceleratorState()
    state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables accelerate launch exported
    state.distributed_type = DistributedType.FSDP
    from accelerate import PartialState

    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator = Accelerator(cpu=True, mixed_precision="no")

    cfg = PPOConfig(batch_size=2, mini_batch_size=2, critic="separate", gradient_checkpointing=True,
                    logits_chunk_size=3)
    torch.manual_seed(0)
    _, actor, optimizer = load_policy(Path(model_dir), cfg)
    critic, critic_optimizer = load_critic(Path(model_dir), cfg)
    plain = Actor(load_causal_lm(model_dir))  # unsharded copy: the expected scores
    actor, optimizer = accelerator.prepare(actor, optimizer)
    critic, critic_optimizer = accelerator.prepare(critic, critic_optimizer)
    ref = _shard_frozen(load_causal_lm(model_dir).eval().requires_grad_(False), accelerator)

    ids = torch.randint(0, plain.lm.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    att = torch.ones_like(ids)
    actor.train()
    logprobs, _, _ = response_scores(actor, ids, att, 4, 0.7, cfg.logits_chunk_size)
    logprobs.sum().backward()
    with torch.no_grad():
        expected = response_scores(plain, ids, att, 4, 0.7, 0)[0]
        ref_logprobs = reference_logprobs(ref, ids, att, 4, 0.7, cfg.logits_chunk_size)
    grads = [p.grad for p in actor.parameters()]
    result = {
        "rank": accelerator.process_index,
        "distributed_type": str(accelerator.distributed_type),
        "num_layers": plain.lm.config.num_hidden_layers,
        "actor": sharding_summary(actor),
        "critic": sharding_summary(critic),
        "reference": sharding_summary(ref),
        "actor_logprob_error": (logprobs.detach() - expected).abs().max().item(),
        "reference_logprob_error": (ref_logprobs - expected).abs().max().item(),
        "actor_grads": sum(g is not None for g in grads),
        "actor_params": len(grads),
    }
    Path(f"{out_json}.{accelerator.process_index}").write_text(json.dumps(result))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
