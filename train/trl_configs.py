"""TRL configs from the ``sft`` and ``grpo`` config groups.

A group's keys are TRL config fields, except the project's own few (listed in
``PROJECT_KEYS``), and the ``hardware`` group's keys are merged into both. An unknown key is
an error that names it, before any training starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from solvers.config import ConfigError

PROJECT_KEYS = {
    "sft": ("enabled", "mask_erased", "max_minutes", "length_buckets", "outcome_marker"),
    "grpo": ("enabled", "rewards", "max_minutes", "n_prompts", "task_rewards", "reward_weights", "generator"),
}


def grpo_rewards(cfg: dict) -> tuple[list[str], list[float] | None]:
    """(reward names, weights) for the task being trained: ``grpo.task_rewards.<data.task>``
    when the config has one, else the task's own ``GRPO_REWARDS`` when it declares them
    (task=program: the sandboxed program reward and the tag format), else ``grpo.rewards`` and
    ``grpo.reward_weights``."""
    from solvers import TASKS

    g = cfg["grpo"]
    task = (cfg.get("data") or {}).get("task")
    chosen = (g.get("task_rewards") or {}).get(task)
    if chosen:
        return list(chosen["rewards"]), chosen.get("reward_weights")
    if task in TASKS and TASKS[task].GRPO_REWARDS:
        names, weights = zip(*TASKS[task].GRPO_REWARDS)
        return list(names), list(weights)
    return list(g["rewards"]), g.get("reward_weights")


def _trl_args(cfg: dict, stage: str, out_dir: Path, cls) -> dict:
    group = cfg[stage]
    args = {k: v for k, v in group.items() if k not in PROJECT_KEYS[stage]}
    args.update(cfg["hardware"])
    args.update(output_dir=str(out_dir), seed=cfg["seed"])
    known = {f.name for f in dataclasses.fields(cls)}
    for key in args:
        if key not in known:
            origin = "hardware" if key in cfg["hardware"] else stage
            raise ConfigError(f"{origin}.{key}", f"not a field of TRL's {cls.__name__}")
    return args


def sft_config(cfg: dict, out_dir: Path):
    from trl import SFTConfig

    args = _trl_args(cfg, "sft", out_dir, SFTConfig)
    args["completion_only_loss"] = True  # the prompt never counts in the loss
    return SFTConfig(**args)


def grpo_config(cfg: dict, out_dir: Path):
    from trl import GRPOConfig

    from train.rewards import REWARDS

    g = cfg["grpo"]
    names, weights = grpo_rewards(cfg)
    for name in names:
        if name not in REWARDS:
            raise ConfigError("grpo.rewards", f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
    if weights is not None and len(weights) != len(names):
        raise ConfigError("grpo.reward_weights", f"{len(weights)} weights for {len(names)} rewards")
    batch = g["per_device_train_batch_size"] * g.get("gradient_accumulation_steps", 1)
    if batch % g["num_generations"]:
        raise ConfigError(
            "grpo.per_device_train_batch_size",
            f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be divisible by "
            f"grpo.num_generations ({g['num_generations']}): it counts completions, num_generations per prompt")
    args = _trl_args(cfg, "grpo", out_dir, GRPOConfig)
    args["reward_weights"] = weights
    return GRPOConfig(**args)
