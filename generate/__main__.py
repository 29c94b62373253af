"""python -m generate task=countdown n=10000 out=DIR seed=0  (see conf/generate.yaml)"""

from __future__ import annotations

import sys
import time

import hydra
from omegaconf import DictConfig, OmegaConf

import conf  # noqa: F401  (stores the task config group, made from the tasks' Config dataclasses)
from generate import pipeline
from generate.write import summary
from solvers.config import ConfigError


@hydra.main(config_path="../conf", config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    t0 = time.perf_counter()
    try:
        out, gen = pipeline.run(OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    elapsed = time.perf_counter() - t0
    if (out / "manifest.json").exists():
        print(summary(out))
        if gen.timing["items"]:
            print(f"made {gen.timing['items']} items in {elapsed:.1f} s "
                  f"({gen.timing['items'] / elapsed:.0f} items/s, {gen.settings.workers} workers)")
    print(out)


if __name__ == "__main__":
    main()
