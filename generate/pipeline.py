"""The data pipeline: ``run(cfg)`` makes the dataset a resolved generate config describes.

The work flows one way, one job per module:

- ``generate.settings``: the config, checked in one place (``settings(cfg) -> Settings``);
- ``generate.items``: item ``idx`` of a split, drawn, solved, rendered, paraphrased and
  validated into one chunk line;
- ``generate.chunks``: the resumable runner (``Generator``), which writes chunks of items
  under a run lock, resumes from the chunks it has, and finalises once all exist;
- ``generate.finalise``: chunks -> shards without rejects and repeats, then the card and
  manifest (``Finaliser``, the Generator's finalising half), written by ``generate.write``.

Each imports only those above it and ``generate.write``, except that ``chunks`` imports
``finalise`` (the Generator runs the finalising); tests/test_imports.py checks for circles.

The names other code and the tests use are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from generate.chunks import Generator
from generate.items import Items, read_problems
from generate.settings import SPLITS, Settings, settings
from solvers.config import ConfigError

__all__ = ["ConfigError", "Generator", "Items", "SPLITS", "Settings", "read_problems", "run", "settings"]


def run(cfg: dict, on_chunk: Optional[Callable[[str, int], None]] = None) -> tuple[Path, Generator]:
    """Generate the dataset a resolved config describes; return its directory (and the
    Generator, whose ``timing`` says what the run did). ``on_chunk(split, start)`` is called
    after each chunk is written (tests interrupt there)."""
    gen = Generator(settings(cfg), on_chunk)
    return gen.run(), gen
