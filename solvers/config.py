"""Config checks shared by every task: one clear message that names the key."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A bad config value. ``str()`` names the key and what it allows."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


def check_int_range(key: str, value: Any, lo: int, hi: int | None = None) -> None:
    if type(value) is not int:
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo} to {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(key, f"must be {allowed}, got {value}")


def check_choice(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {value!r}")


def build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    """Build a config dataclass from a mapping, naming any unknown key."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", f"unknown key; known keys: {', '.join(sorted(names))}")
    return cls(**values)
