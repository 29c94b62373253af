"""Reading the files users give (``problems=``, ``traces=``, ``decontaminate=``): UTF-8, or an
error that names the key, the file, the line and the byte."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from solvers.config import ConfigError


def utf8_lines(path: Path, key: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 file, newlines kept; ConfigError(key) at the first line
    that is not UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(key, f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} "
                                  f"at column {e.start + 1}); save the file as UTF-8") from None


def utf8_text(path: Path, key: str) -> str:
    """The whole of a UTF-8 file, or ConfigError(key) naming the first line that is not."""
    return "".join(line for _, line in utf8_lines(path, key))
