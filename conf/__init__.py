"""Hydra configs of ``python -m generate`` and ``python -m train``.

The ``task`` group (``task=countdown``, ``task=sudoku``, ...) has no YAML files: each task's
``Config`` dataclass is the one place its defaults are written, and importing this package
stores them in Hydra's ConfigStore (``task_node``), so a new task needs no config file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hydra.core.config_store import ConfigStore

from solvers import TASKS

CONF_DIR = Path(__file__).resolve().parent


def task_node(name: str) -> dict:
    """The ``task`` config of ``name``: its Config dataclass's defaults and the task's name.

    >>> task_node("countdown")["n_numbers"], task_node("countdown")["name"]
    (4, 'countdown')
    """
    return {"name": name, **dataclasses.asdict(TASKS[name].Config())}


def register_tasks() -> None:
    store = ConfigStore.instance()
    for name in TASKS:
        store.store(group="task", name=name, node=task_node(name))


def compose_generate(overrides: list[str] = ()) -> dict:
    """The ``python -m generate`` config with ``overrides``, composed by Hydra as the app
    composes it (inside a running Hydra app, through its own search path)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if GlobalHydra.instance().is_initialized():
        cfg = compose("generate", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("generate", overrides=list(overrides))
    return OmegaConf.to_container(cfg)


register_tasks()
