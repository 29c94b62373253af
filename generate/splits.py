"""Splits by puzzle content, and per-item randomness that no neighbour shares.

A puzzle's split is a function of its content alone (a hash of its canonical key), so
train, val and test are disjoint for every seed and every run: the test puzzles of seed 0
are never train puzzles of seed 1. Small puzzle spaces repeat whatever the seed, which is
why disjointness cannot rest on the seed.

Per-item randomness comes from the string ``"{task}/{split}/{seed}/{idx}"``; seeding with
``seed + idx`` would make item 1 of seed 42 replay item 0 of seed 43.
"""

from __future__ import annotations

import hashlib
import random
from typing import Mapping

HELDOUT_SPLIT = "test_unseen"


def item_rng(task: str, split: str, seed: int, idx: int, stream: str = "") -> random.Random:
    # random.Random(str) hashes the string with SHA-512: stable across runs and machines.
    return random.Random(f"{task}/{split}/{seed}/{idx}{stream}")


def content_fraction(key: str) -> float:
    """A puzzle key's fixed place in [0, 1)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(key: str, weights: Mapping[str, float]) -> str:
    """The split a puzzle belongs to, by its key: weights are shares of puzzle space.

    >>> split_of("3,5,8,25=46", {"train": 1.0})
    'train'
    """
    total = sum(weights.values())
    x = content_fraction(key) * total
    acc = 0.0
    name = ""
    for name, w in weights.items():
        acc += w
        if x < acc:
            return name
    return name
