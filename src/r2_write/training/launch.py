"""Training stages in their own ``accelerate launch`` processes; the Kedro run stays one process.

How a multi-GPU (or multi-machine) run is launched, in one place. ``kedro run`` is always a
single process: it loads the inputs from the catalog, saves the outputs, and logs to MLflow,
once. A training node whose parameters hold a ``launch`` block (``ppo.launch``,
``ppo_outcome.launch``, ``sft.launch``, ``grpo.launch``) does not train in the Kedro process;
it writes its inputs (prompts, rubrics, the typed configuration, how to build the reward) as
JSON into a run directory and starts::

    accelerate launch [--config_file conf/accelerate/fsdp.yaml] --num_processes N \\
        -m r2_write.training.launch <stage> <run_dir>

Every launched process reads the same ``spec.json``, builds its own reward (the judge client
from the same ``params:llm`` / ``params:judge`` through :mod:`r2_write.roles`, so each process
judges its own share of the rollouts) and trains with the same code as the in-process run
(:func:`r2_write.rl.trainer.train`, TRL's trainers). The main process writes the model directory
and ``result.json`` (history, final directory, judge failures summed over the processes); the
node reads them back, returns the model directory to the catalog and logs the history to
MLflow. Without ``launch`` (or ``launch: null``) the node trains in the Kedro process as before.

Why not ``accelerate launch -m r2_write`` (every process running the whole Kedro pipeline):
every rank would load and save every dataset and open its own MLflow run, and the non-training
nodes (synthesis, judging) would run N times; guarding each of them is more code than starting
the trainers. ``python -m r2_write`` under several processes stops at once with a message
pointing here (:func:`refuse_multiprocess_kedro`).

On a machine without CUDA the processes use gloo on CPU: the launcher adds ``--multi_gpu``
(accelerate's multi-process launcher, torchrun) and ``ACCELERATE_USE_CPU=true``
(``accelerate launch --cpu`` alone starts one process only). On several machines, run the same
``kedro run`` on machine 0 and, on every other machine, the printed worker command with its
``--machine_rank`` (docs/training.md, "Multi-node"); the run directory must be on a shared filesystem.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from r2_write.processes import run_streamed

logger = logging.getLogger(__name__)

SPEC_FILE, RESULT_FILE = "spec.json", "result.json"
_ERROR_LINE = re.compile(r"Error|Exception|terminate called|Traceback|\[rank \d+\] (?:ERROR|WARNING)")
STAGES = ("ppo", "sft", "grpo")
_WAIT_ENV = "R2_WRITE_LAUNCH_WAIT_S"  # how long a worker on another machine waits for spec.json
TIMEOUT_ENV = "R2_WRITE_COLLECTIVE_TIMEOUT_S"  # launch.collective_timeout_s, read by each worker's process group
FSDP_ON_CPU_ENV = "R2_WRITE_FSDP_ON_CPU"  # tests only: run accelerate's FSDP2 path on CPU processes (gloo)


class LaunchParams(BaseModel):
    """``<stage>.launch``: how to start the stage's training processes (absent or null: in the Kedro process)."""

    model_config = ConfigDict(extra="forbid")

    num_processes: int = Field(1, ge=1, description="Processes over all machines (one per GPU).")
    config_file: str | None = Field(
        None, description="accelerate config file (conf/accelerate/fsdp.yaml, zero3.yaml); None = plain data "
                          "parallelism (DDP), every process holding whole models.")
    num_machines: int = Field(1, ge=1, description="Machines taking part (multi-node).")
    machine_rank: int = Field(0, ge=0, description="This machine's rank; the Kedro run is on machine 0.")
    main_process_ip: str | None = Field(None, description="Machine 0's address (multi-node).")
    main_process_port: int | None = Field(
        None, ge=1, le=65535, description="Rendezvous port; None = a free local port on one machine, 29500 on several.")
    cpu: bool | None = Field(None, description="gloo on CPU; None = when no CUDA device is visible.")
    run_dir: str | None = Field(
        None, description="Where spec.json/result.json go; None = <output_dir>/launch. On several machines a "
                          "path on the shared filesystem that the other machines' worker command names.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for the processes.")
    extra_args: list[str] = Field(default_factory=list, description="Further `accelerate launch` arguments.")
    verify_replicas: bool = Field(
        False, description="Fail unless every process ends with the same weights (data parallelism only: FSDP "
                           "and ZeRO-3 shard them). Costs one hash of the weights per process.")
    keep_run_dir: bool = Field(False, description="Keep spec.json/result.json after a successful run.")
    collective_timeout_s: int | None = Field(
        None, ge=60, description="Timeout of every collective (barrier, all-reduce, FSDP all-gather) in seconds; "
                                 "None = torch's default (10 minutes). Ranks wait at collectives while others "
                                 "generate 25k-token rollouts, wait for the judge API or write checkpoints.")


def parse_launch(data: Any, where: str) -> LaunchParams | None:
    """``<stage>.launch`` validated, or None (train in the Kedro process) when absent or null."""
    from r2_write.config import parse_params

    return None if data is None else parse_params(LaunchParams, data, where)


# ----------------------------------------------------------------------------- Kedro side


def launch_ppo(
    launch: LaunchParams, policy_dir: str, prompts: list[str], rubrics: list | None, cfg, reward_cfg,
    reward: dict,
) -> dict[str, Any]:
    """:func:`r2_write.rl.trainer.train` in launched processes.

    Args:
        launch: How to launch.
        policy_dir, prompts, rubrics: As for ``train``.
        cfg: The :class:`~r2_write.rl.ppo_config.PPOConfig` (its ``output_dir`` holds the checkpoints).
        reward_cfg: The :class:`~r2_write.rewards.process.ProcessRewardConfig`.
        reward: How each process builds its reward: ``{"function": "module:attr", "kwargs": {...}}``,
            ``function(**kwargs) -> (reward_fn, judge or None)``; :func:`r2_write.rewards.spec.reward_spec`
            gives the rubric judge's, :func:`r2_write.rewards.spec.build_reward` builds it.

    Returns:
        ``{"history", "final_dir", "judge_failed_items", "num_processes"}``.
    """
    payload = {"policy_dir": str(policy_dir), "prompts": list(prompts), "rubrics": rubrics,
               "config": cfg.model_dump(), "reward_config": reward_cfg.model_dump(), "reward": reward}
    return run_launched("ppo", payload, launch, Path(launch.run_dir or Path(cfg.output_dir) / "launch"))


def launch_sft(launch: LaunchParams, model_dir: str, prompts: list[str], completions: list[str], cfg) -> tuple[str, list[dict]]:
    """:func:`r2_write.training.sft.train_sft` in launched processes (``cfg.output_dir`` set); returns ``(final_dir, history)``."""
    out = _output_dir(cfg, "sft")
    payload = {"model_dir": str(model_dir), "prompts": list(prompts), "completions": list(completions),
               "config": cfg.model_dump()}
    result = run_launched("sft", payload, launch, Path(launch.run_dir or Path(out) / "launch"))
    return result["final_dir"], result["history"]


def launch_grpo(
    launch: LaunchParams, model_dir: str, prompts: list[str], rubrics: list, cfg, reward: dict
) -> tuple[str, list[dict], int]:
    """:func:`r2_write.training.grpo.train_grpo` in launched processes (``cfg.output_dir`` set); returns ``(final_dir, logs, judge failures)``."""
    out = _output_dir(cfg, "grpo")
    payload = {"model_dir": str(model_dir), "prompts": list(prompts), "rubrics": list(rubrics),
               "config": cfg.model_dump(), "reward": reward}
    result = run_launched("grpo", payload, launch, Path(launch.run_dir or Path(out) / "launch"))
    return result["final_dir"], result["history"], result["judge_failed_items"]


def _output_dir(cfg, stage: str) -> str:
    if not cfg.output_dir:  # train_stage sets it from the run identity (r2_write.runs.run_key)
        raise ValueError(f"{stage}: launched training needs cfg.output_dir (r2_write.training.stage sets it)")
    return cfg.output_dir


def launch_command(stage: str, run_dir: Path, launch: LaunchParams) -> tuple[list[str], dict[str, str]]:
    """The ``accelerate launch`` command line and the extra environment for ``stage``.

    >>> cmd, env = launch_command("ppo", Path("/r"), LaunchParams(num_processes=2, main_process_port=29501, cpu=True))
    >>> " ".join(cmd[1:]), env
    ('-m accelerate.commands.launch --num_processes 2 --num_machines 1 --main_process_port 29501 --multi_gpu --mixed_precision no --dynamo_backend no -m r2_write.training.launch ppo /r', {'ACCELERATE_USE_CPU': 'true'})
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.config_file:
        if not Path(launch.config_file).is_file():
            from r2_write.config import ConfigError

            raise ConfigError(f"launch.config_file {launch.config_file!r} not found (relative paths start at the "
                              f"project root, e.g. conf/accelerate/fsdp.yaml)")
        sharded = _config_distributed_type(launch.config_file)
        forced = sharded == "FSDP" and launch.env.get(FSDP_ON_CPU_ENV) == "1"
        if sharded in ("FSDP", "DEEPSPEED") and _use_cpu(launch) and not forced:
            from r2_write.config import ConfigError

            raise ConfigError(
                f"launch.config_file {launch.config_file} asks for {sharded}, which needs GPUs: on CPU accelerate "
                f"(1.15) switches to {sharded} only from a GPU-type distributed setup, so the config would be ignored "
                f"and the models replicated (plain DDP); drop config_file on CPU")
        cmd += ["--config_file", launch.config_file]
    cmd += ["--num_processes", str(launch.num_processes), "--num_machines", str(launch.num_machines)]
    if launch.num_machines > 1:
        if not launch.main_process_ip:
            from r2_write.config import ConfigError

            raise ConfigError("launch.main_process_ip is needed with num_machines > 1 (machine 0's address)")
        cmd += ["--machine_rank", str(launch.machine_rank), "--main_process_ip", launch.main_process_ip,
                "--main_process_port", str(launch.main_process_port or 29500)]
    else:
        cmd += ["--main_process_port", str(launch.main_process_port or _free_port())]
    if not launch.config_file:
        if launch.num_processes > 1:
            cmd.append("--multi_gpu")  # torchrun; with ACCELERATE_USE_CPU the processes use gloo
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"]  # the stage's own settings decide
    cmd += [*launch.extra_args, "-m", __name__, stage, str(run_dir)]
    env = dict(launch.env)
    if _use_cpu(launch):
        env["ACCELERATE_USE_CPU"] = "true"
    if launch.collective_timeout_s is not None:
        env[TIMEOUT_ENV] = str(launch.collective_timeout_s)
    return cmd, env


def run_launched(stage: str, payload: dict, launch: LaunchParams, run_dir: Path) -> dict[str, Any]:
    """Write ``spec.json``, run the launched processes (their output streamed to this log), read ``result.json``.

    The processes get SIGTERM when this process dies (Linux), so a killed ``kedro run`` leaves
    no trainers behind; rerunning it resumes from their last checkpoint.

    Raises:
        RuntimeError: The processes failed (the message holds the exit status and the last
            lines of their output) or, with ``verify_replicas``, ended with different weights.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    payload = {**payload, "verify_replicas": launch.verify_replicas}
    _write_json(run_dir / SPEC_FILE, {"stage": stage, "payload": payload})
    cmd, extra_env = launch_command(stage, run_dir, launch)
    logger.info("%s: launching %d process(es): %s%s", stage, launch.num_processes,
                " ".join(f"{k}={v}" for k, v in extra_env.items()) + " " if extra_env else "", " ".join(cmd))
    if launch.num_machines > 1:
        logger.info("%s: on machine k = 1..%d run: accelerate launch %s --machine_rank k --num_machines %d "
                    "--num_processes %d --main_process_ip %s -m %s %s %s", stage, launch.num_machines - 1,
                    f"--config_file {launch.config_file}" if launch.config_file else "--multi_gpu",
                    launch.num_machines, launch.num_processes, launch.main_process_ip, __name__, stage, run_dir)
    start = time.perf_counter()
    # torchrun's own traceback fills the tail: the workers' error lines are kept apart
    done = run_streamed(cmd, extra_env, cause=_worker_error)
    result_file = run_dir / RESULT_FILE
    if done.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"{stage}: the launched training failed (exit status {done.returncode}; {' '.join(cmd)}); "
                           f"the workers' error lines:\n" + "\n".join(done.causes) + "\nlast output:\n" + "\n".join(done.tail))
    result = json.loads(result_file.read_text())
    logger.info("%s: %d process(es) finished in %.0f s", stage, result.get("num_processes", 0), time.perf_counter() - start)
    digests = result.get("weights_digests")
    if launch.verify_replicas and digests and len(set(digests)) != 1:
        raise RuntimeError(f"{stage}: the processes ended with different weights (digests {digests})")
    if not launch.keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def refuse_multiprocess_kedro() -> None:
    """Stop a ``kedro run`` / ``python -m r2_write`` started under several processes (torchrun, accelerate launch).

    Every process would run the whole pipeline, save the same datasets and open its own MLflow
    run. The training stages launch their own processes instead (``<stage>.launch``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        from r2_write.config import ConfigError

        raise ConfigError(
            f"kedro run was started in {world} processes (WORLD_SIZE={world}): run it as one process "
            f"(`kedro run` or `python -m r2_write`) and set the training stage's launch block instead, e.g. "
            f"--params \"ppo.launch.num_processes=8,ppo.launch.config_file=conf/accelerate/fsdp.yaml\"; "
            f"the PPO/SFT/GRPO node then starts `accelerate launch` itself (docs/training.md: Distributed training)"
        )


def _use_cpu(launch: LaunchParams) -> bool:
    if launch.cpu is not None:
        return launch.cpu
    import torch

    return not torch.cuda.is_available()


def _config_distributed_type(path: str) -> str:
    """The ``distributed_type`` of an accelerate config file (``FSDP``, ``DEEPSPEED``, ``MULTI_GPU``, ...)."""
    from accelerate.commands.config.config_args import load_config_from_file

    kind = load_config_from_file(path).distributed_type
    return str(getattr(kind, "value", kind))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_error(line: str) -> str | None:
    """A worker's error line (not torchrun's or accelerate's own traceback about the failed worker)."""
    if _ERROR_LINE.search(line) and "torch/distributed" not in line and "accelerate/commands" not in line:
        return line
    return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(path)


# ----------------------------------------------------------------------------- launched side


def _process_group_kwargs() -> dict:
    """``init_process_group`` arguments: the collective timeout of ``launch.collective_timeout_s`` when set."""
    from datetime import timedelta

    seconds = os.environ.get(TIMEOUT_ENV)
    return {"timeout": timedelta(seconds=int(seconds))} if seconds else {}


def _fsdp_activation_checkpointing() -> bool:
    """Whether the accelerate config launched FSDP with its own activation checkpointing (fsdp.yaml)."""
    flag = lambda name: os.environ.get(name, "false").lower() in ("true", "1")  # noqa: E731
    return flag("ACCELERATE_USE_FSDP") and flag("FSDP_ACTIVATION_CHECKPOINTING")


def _without_double_checkpointing(config: dict, stage: str) -> dict:
    """SFT/GRPO: TRL's gradient checkpointing off when FSDP checkpoints the activations (both at once is an error).

    The activations are still checkpointed: accelerate wraps each decoder layer (the model's
    ``_no_split_modules``) in a checkpoint wrapper. PPO is not passed through here: its trainer
    keeps ``gradient_checkpointing`` and checks that FSDP wrapped its layers
    (:func:`r2_write.rl.trainer.sharding_summary`).
    """
    if config.get("gradient_checkpointing") and _fsdp_activation_checkpointing():
        logger.info("%s: FSDP checkpoints the activations (fsdp_activation_checkpointing); %s.gradient_checkpointing "
                    "is left to it", stage, stage)
        return {**config, "gradient_checkpointing": False}
    return config


def _run_ppo(payload: dict) -> dict:
    from r2_write.rewards.process import ProcessRewardConfig
    from r2_write.rewards.spec import build_reward
    from r2_write.judge.reward import audit_of
    from r2_write.rl.monitor import judges_from_reward_spec
    from r2_write.rl.trainer import train
    from r2_write.rl.ppo_config import PPOConfig

    cfg = PPOConfig(**payload["config"])  # gradient_checkpointing as asked: the trainer picks FSDP's or transformers'
    reward_cfg = ProcessRewardConfig(**payload["reward_config"])
    reward_fn, judge = build_reward(payload["reward"], reward_cfg)
    out = train(payload["policy_dir"], payload["prompts"], reward_fn, cfg, rubrics=payload["rubrics"],
                reward_cfg=reward_cfg, weights_digest=payload["verify_replicas"], judge_audit=audit_of(judge),
                monitor_judges=judges_from_reward_spec(payload["reward"]) if cfg.monitor.enabled else None)
    out["judge_failed_items"] = judge.stats.failed_items if judge is not None else 0
    return out


def _run_sft(payload: dict) -> dict:
    from r2_write.training.sft import SFTParams, train_sft

    final_dir, history = train_sft(payload["model_dir"], payload["prompts"], payload["completions"],
                                   SFTParams(**_without_double_checkpointing(payload["config"], "sft")))
    return {"final_dir": final_dir, "history": history, "judge_failed_items": 0}


def _run_grpo(payload: dict) -> dict:
    from r2_write.judge.reward import audit_of
    from r2_write.rl.monitor import judges_from_reward_spec
    from r2_write.training.grpo import GRPOParams, train_grpo
    from r2_write.rewards.spec import build_reward

    reward_fn, judge = build_reward(payload["reward"])
    cfg = GRPOParams(**_without_double_checkpointing(payload["config"], "grpo"))
    final_dir, history = train_grpo(payload["model_dir"], payload["prompts"], payload["rubrics"], reward_fn, cfg,
                                    judge_audit=audit_of(judge),
                                    monitor_judges=judges_from_reward_spec(payload["reward"]) if cfg.monitor.enabled else None)
    return {"final_dir": final_dir, "history": history,
            "judge_failed_items": judge.stats.failed_items if judge is not None else 0}


_RUNNERS = {"ppo": _run_ppo, "sft": _run_sft, "grpo": _run_grpo}


def worker(stage: str, run_dir: str | Path) -> None:
    """One launched process: read ``spec.json``, train, and (main process) write ``result.json``.

    A process on another machine waits up to ``R2_WRITE_LAUNCH_WAIT_S`` (600) seconds for the
    spec, which machine 0's Kedro run writes before it launches its own processes.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env

    # the process group (and each process's GPU) before any model or judge; PartialState reads
    # ACCELERATE_USE_CPU only when told (the Accelerator reads it itself): without it, processes
    # without CUDA would each see a world of one
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), **_process_group_kwargs())
    if int(os.environ.get("WORLD_SIZE", "1")) != state.num_processes:
        raise RuntimeError(f"launched as {os.environ.get('WORLD_SIZE')} processes but accelerate sees "
                           f"{state.num_processes} ({state.distributed_type}): no GPU here? set launch.cpu: true")
    logging.basicConfig(level=logging.INFO if state.is_main_process else logging.WARNING,
                        format=f"[rank {state.process_index}] %(levelname)s %(name)s: %(message)s")
    if os.environ.get(FSDP_ON_CPU_ENV) == "1":
        _force_fsdp_on_cpu(Path(run_dir) / SPEC_FILE)
    spec_file = Path(run_dir) / SPEC_FILE
    deadline = time.monotonic() + float(os.environ.get(_WAIT_ENV, "600"))
    while not spec_file.exists():
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"{spec_file} never appeared (machine 0 writes it when its node starts)")
        time.sleep(2)
    spec = json.loads(spec_file.read_text())
    if spec["stage"] != stage:
        raise ValueError(f"{spec_file} is for stage {spec['stage']!r}, not {stage!r}")
    out = _RUNNERS[stage](spec["payload"])
    failed = gather_object([int(out.pop("judge_failed_items", 0))])
    digests = gather_object([out.pop("weights_digest", None)])
    if state.is_main_process:
        _write_json(Path(run_dir) / RESULT_FILE, {**out, "judge_failed_items": sum(failed),
                                                  "weights_digests": [d for d in digests if d is not None],
                                                  "num_processes": state.num_processes,
                                                  "distributed_type": str(getattr(state.distributed_type, "value",
                                                                                  state.distributed_type))})
    state.wait_for_everyone()


def _force_fsdp_on_cpu(spec_file: Path) -> None:
    """Tests only (``R2_WRITE_FSDP_ON_CPU=1``): put accelerate's state on FSDP for CPU processes.

    accelerate 1.15 switches to FSDP only from a GPU-type setup, so on CPU it would replicate
    the models (DDP) while torch's ``fully_shard`` itself runs on CPU with gloo. This creates
    the accelerator state once (CPU, the stage's mixed precision) and sets its distributed
    type to FSDP with the plugin that ``accelerate launch --config_file`` exported; the
    stage's own ``Accelerator()`` then shares that state and shards as on GPUs.
    """
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        raise RuntimeError(f"{FSDP_ON_CPU_ENV}=1 needs an FSDP config file (conf/accelerate/fsdp.yaml)")
    config = json.loads(spec_file.read_text())["payload"].get("config", {})
    Accelerator(cpu=True, mixed_precision=config.get("mixed_precision", "no"))
    state = AcceleratorState()
    state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables accelerate launch set
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in STAGES:
        print(f"usage: accelerate launch ... -m {__name__} {{{','.join(STAGES)}}} RUN_DIR", file=sys.stderr)
        return 2
    worker(argv[0], argv[1])
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # joins gloo's threads: without it, exit can abort
        dist.destroy_process_group()  # ("terminate called without an active exception", SIGABRT)
    return 0


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # results are on disk and the process group is gone: skip the interpreter's teardown, where the
    # C++ destructors of torch's threads could still abort a finished worker (SIGABRT, seen in CI)
    os._exit(code)
