"""PPO on veRL with the project's token-level process reward (``ppo.engine: verl``).

veRL (pip ``verl``, 0.9.1) is the RL engine at paper scale: Ray placement, FSDP with offload,
vLLM rollouts that sleep during the update, remove-padding and token-budget micro-batches,
Ulysses sequence parallelism, sharded checkpoints with resume, a separate critic. Nothing of it
is copied here; this package plugs the project into it, the way veRL's own recipes do:

==========================  =====================================================================
module                      what it does (runs in)
==========================  =====================================================================
``config``                  ``ppo.verl``: the engine's own settings (Kedro process)
``overrides``               THE mapping table ``params:ppo`` -> veRL keys, plus the scale settings
``dataset``                 the RL set as veRL's parquet (``RLHFDataset`` reads it)
``rewards``                 per-token process reward placement, shared with the own loop; metric map
``memory``                  per-GPU memory arithmetic of the veRL settings (``benchmarks/verl_memory.py``)
``launch``                  the node's side: check the environment, write the run, start veRL, merge
``reward_manager``          veRL's reward manager of the project (veRL environment, Ray workers)
``main``                    the entry point: veRL's PPO trainer with the token-level reward path
==========================  =====================================================================

Only ``reward_manager`` and ``main`` import ``verl``; they run in the veRL environment
(``make verl-env``), never in the Kedro process.
"""
