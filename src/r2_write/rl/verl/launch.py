"""The ``ppo`` node's side of the veRL engine: check the environment, write the run, start veRL, merge the actor.

:func:`train_verl` is what ``train_ppo_policy`` runs with ``ppo.engine: verl``. In the run's
directory (``<output_dir>/verl/``) it writes

* ``train.parquet``: the RL set in veRL's layout (:mod:`r2_write.rl.verl.dataset`), without the
  over-optimisation monitor's held-out prompts when ``ppo.monitor`` is on;
* ``val.parquet`` (monitor on): those held-out prompts (:func:`r2_write.rl.monitor.split_prompts`,
  the own loop's split), veRL's validation set, run every ``monitor.every`` steps and scored by
  both monitor judges in the reward manager;
* ``spec.json``: the reward judge spec, reward settings, lambda and end tokens (read by the reward manager);
* ``overrides.yaml``: the run's configuration as overrides of veRL's ``ppo_trainer.yaml``
  (:func:`r2_write.rl.verl.overrides.verl_overrides`);
* ``command.json``: the launch command (argv), as started;

then runs veRL's PPO trainer as a subprocess in veRL's own environment (``ppo.verl.python``,
built by ``make verl-env``), its output streamed to this log. veRL writes sharded checkpoints
to ``<output_dir>/checkpoints/global_step_<n>/`` and resumes from the newest after a kill
(``trainer.resume_mode=auto``; the output directory is the run identity's, so a rerun finds it).
At the end the newest actor checkpoint is merged into a Hugging Face directory,
``<output_dir>/final``, which the node returns as the ``ppo.model`` catalog version. veRL's
per-step metrics (its ``file`` tracker) come back as the stage's history under the own loop's
names (:func:`r2_write.rl.verl.rewards.steps_from_log`).

A missing environment stops the node before anything runs, a failed subprocess with one line
naming the cause (:class:`VerlError`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from r2_write import processes
from r2_write.rl.monitor import split_prompts
from r2_write.rl.verl.dataset import MONITOR_SOURCE, write_rl_set
from r2_write.rl.verl.overrides import hydra_args, verl_overrides
from r2_write.rl.verl.rewards import steps_from_log

if TYPE_CHECKING:
    from r2_write.rewards.process import ProcessRewardConfig
    from r2_write.rl.ppo_config import PPOConfig

logger = logging.getLogger(__name__)

ENTRY_MODULE = "r2_write.rl.verl.main"
_CAUSE = re.compile(r"(?:\w+Error|\w+Exception|Error|CUDA out of memory|Killed|RayTaskError)\b.*")


class VerlError(RuntimeError):
    """The veRL engine cannot run or failed; the message is one line naming the cause."""


def check_environment(python: str) -> Path:
    """The veRL environment's Python; fails in one line saying how to build it when it is missing.

    >>> check_environment("/nonexistent/.venv-verl/bin/python")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    r2_write.rl.verl.launch.VerlError: ppo.engine is verl but veRL's environment is missing (/nonexistent/.venv-verl/bin/python not found): build it with `make verl-env`, or set ppo.verl.python to its Python
    """
    path = Path(python).expanduser()
    if not path.exists():
        raise VerlError(f"ppo.engine is verl but veRL's environment is missing ({python} not found): build it with "
                        f"`make verl-env`, or set ppo.verl.python to its Python")
    return path


def eos_ids(policy_dir: str) -> list[int]:
    """End tokens as the own rollout takes them: the tokenizer's and the generation config's."""
    from transformers import GenerationConfig

    from r2_write.llm.loading import load_tokenizer

    ids = {load_tokenizer(policy_dir).eos_token_id}
    try:
        gen_eos = GenerationConfig.from_pretrained(policy_dir).eos_token_id
    except OSError:  # no generation_config.json
        gen_eos = None
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def prepare_run(
    policy_dir: str, prompts: list[str], rubrics: list[Any], cfg: PPOConfig, reward_cfg: ProcessRewardConfig,
    reward_spec: dict, variant: str = "ppo",
) -> tuple[list[str], Path]:
    """Write the run directory (dataset, spec, overrides, command); returns ``(command, run_dir)``."""
    prompts, rubrics, held_prompts, held_rubrics = split_prompts(prompts, rubrics, cfg.monitor, f"{variant}.monitor")
    if len(prompts) < cfg.prompts_per_step:  # veRL's dataloader drops a partial batch: no step at all
        held = f" training prompts (after the {len(held_prompts)} the monitor holds out)" if held_prompts else " prompts"
        raise VerlError(f"{variant}: the RL set has {len(prompts)}{held}, fewer than one veRL step takes "
                        f"({variant}.batch_size / rollouts_per_prompt = {cfg.prompts_per_step})")
    out = Path(cfg.output_dir)
    run_dir = out / "verl"
    run_dir.mkdir(parents=True, exist_ok=True)
    train_file = write_rl_set(prompts, rubrics, run_dir / "train.parquet")
    val_file = run_dir / "val.parquet"
    if held_prompts:
        write_rl_set(held_prompts, held_rubrics, val_file, data_source=MONITOR_SOURCE)
    elif val_file.exists():  # a run directory reused with the monitor now off
        val_file.unlink()
    spec_file = run_dir / "spec.json"
    spec_file.write_text(json.dumps({
        "reward": reward_spec, "reward_config": reward_cfg.model_dump(), "process_weight": cfg.process_weight,
        "eos_ids": eos_ids(policy_dir),
    }, indent=1, default=str))
    overrides = verl_overrides(cfg, policy_dir=str(Path(policy_dir).resolve()), train_file=str(train_file.resolve()),
                               checkpoint_dir=str((out / "checkpoints").resolve()), n_prompts=len(prompts),
                               experiment=variant, val_file=str(val_file.resolve()) if held_prompts else None)
    (run_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides, sort_keys=False))
    command = [str(Path(cfg.verl.python).expanduser()), "-m", ENTRY_MODULE, f"--r2-spec={spec_file.resolve()}",
               *hydra_args(overrides), f"hydra.run.dir={(run_dir / 'hydra').resolve()}"]  # not ./outputs/<date>
    (run_dir / "command.json").write_text(json.dumps(command, indent=1))
    return command, run_dir


def run_streamed(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run ``command``, its output streamed to this process's stdout; a failure raises :class:`VerlError` in one line."""
    try:
        done = processes.run_streamed(command, env, cause=lambda line: (m.group(0).strip() if (m := _CAUSE.search(line)) else None),
                                      cause_lines=5)
    except OSError as exc:
        raise VerlError(f"{what} could not start ({command[0]}): {exc}") from None
    if done.returncode != 0:
        for line in done.tail:
            logger.error("%s | %s", what, line)
        cause = done.causes[-1] if done.causes else (done.tail[-1].strip() if done.tail else "no output")
        raise VerlError(f"{what} failed (exit status {done.returncode}): {cause}")



def latest_actor(checkpoint_dir: Path) -> Path:
    """The newest ``global_step_<n>/actor`` (veRL's ``latest_checkpointed_iteration.txt``)."""
    marker = checkpoint_dir / "latest_checkpointed_iteration.txt"
    if not marker.exists():
        raise VerlError(f"veRL wrote no checkpoint ({marker} missing): set ppo.save_every or check the run's log")
    actor = checkpoint_dir / f"global_step_{int(marker.read_text().strip())}" / "actor"
    if not actor.exists():
        raise VerlError(f"veRL's newest checkpoint has no actor ({actor} missing)")
    return actor


def merge_actor(python: Path, actor_dir: Path, target: Path, policy_dir: str) -> Path:
    """Merge the sharded FSDP actor into a Hugging Face directory (``verl.model_merger``), tokenizer included."""
    if target.exists():
        shutil.rmtree(target)
    run_streamed([str(python), "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor_dir),
                  "--target_dir", str(target)], "veRL's model merger")
    if not (target / "config.json").exists():
        raise VerlError(f"veRL's model merger wrote no Hugging Face model to {target}")
    for name in os.listdir(policy_dir):  # the catalog and evaluation read the tokenizer beside the weights
        if (name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template"))
                and not (target / name).exists()):
            shutil.copy2(Path(policy_dir) / name, target / name)
    return target


def train_verl(
    policy_dir: str, prompts: list[str], rubrics: list[Any], cfg: PPOConfig, reward_cfg: ProcessRewardConfig,
    reward_spec: dict, variant: str = "ppo",
) -> tuple[str, dict]:
    """PPO on veRL from ``policy_dir``: ``(final model directory, {"history": [...], "judge_failed_items": nan})``.

    The judge's failed items are counted in veRL's reward workers and not gathered (NaN here).
    """
    python = check_environment(cfg.verl.python)
    command, run_dir = prepare_run(policy_dir, prompts, rubrics, cfg, reward_cfg, reward_spec, variant)
    metrics_file = run_dir / f"metrics-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"  # veRL truncates its file: one per attempt
    logger.info("%s: veRL's PPO trainer: %s", variant, " ".join(command[:4]) + f" ... ({run_dir / 'overrides.yaml'})")
    run_streamed(command, f"{variant}: veRL's PPO trainer", env={"VERL_FILE_LOGGER_PATH": str(metrics_file)})
    final = merge_actor(python, latest_actor(Path(cfg.output_dir) / "checkpoints"), Path(cfg.output_dir) / "final",
                        policy_dir)
    history: dict[int, dict] = {}
    for path in sorted(run_dir.glob("metrics-*.jsonl")):  # attempts in order: a resumed step's later line wins
        history.update(steps_from_log(path))
    return str(final), {"history": [history[s] for s in sorted(history)], "judge_failed_items": float("nan")}
