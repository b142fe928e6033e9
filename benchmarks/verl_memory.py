"""Print the per-GPU memory table of PPO on veRL (8 and 16 x 80 GB, 7B and 8B) from the arithmetic.

    .venv/bin/python benchmarks/verl_memory.py

The model of each term is in src/r2_write/rl/verl/memory.py; the token budget and settings are
conf/paper's ppo.verl block. An estimate, not a measurement: nothing of it has run on a GPU.
"""

from r2_write.rl.verl.memory import memory_table

if __name__ == "__main__":
    print(memory_table())
