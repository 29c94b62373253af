"""Keep a benchmark's problems out of a training set: ``decontaminate=FILE``.

FILE holds one problem per line, in either of two forms:

- a puzzle as JSON, in the task's own form (``{"numbers": [25, 8, 3, 5], "target": 46}``):
  a record is rejected when its puzzle is the same puzzle (same ``puzzle_key``: the same
  numbers in any order count as the same Countdown puzzle);
- anything else is a question's text: a record is rejected when its Question shares a run
  of ``ngram`` consecutive words with the line (13 by default, the n-gram length GPT-3's
  contamination study used). Words are lowercased letter runs and digit runs, so
  punctuation and spacing do not hide a match. A line or a question shorter than ``ngram``
  words matches when it appears whole in the other: "What is 7482 / 29?" is found inside a
  longer benchmark problem that asks it.

Every rejection is counted as ``contaminated`` in the manifest, with how many puzzles and
questions the file held.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Iterable

from generate.files import utf8_lines
from solvers.config import ConfigError

_WORD = re.compile(r"[a-z]+|\d+")


def words(text: str) -> tuple[str, ...]:
    """The words compared: lowercased letter runs and digit runs.

    >>> words("Use the numbers 25, 8 to make 33!")
    ('use', 'the', 'numbers', '25', '8', 'to', 'make', '33')
    """
    return tuple(_WORD.findall(text.lower()))


def grams(tokens: tuple[str, ...], n: int) -> Iterable[tuple[str, ...]]:
    return (tokens[i:i + n] for i in range(len(tokens) - n + 1))


class Contamination:
    """What a decontamination file holds, ready to test records against."""

    def __init__(self, task: ModuleType, keys: set[str], lines: list[tuple[str, ...]], ngram: int) -> None:
        self.task = task
        self.keys = keys
        self.ngram = ngram
        self.lines = lines  # the question lines' words
        self.long = {g for t in lines if len(t) >= ngram for g in grams(t, ngram)}
        self.short = {t for t in lines if len(t) < ngram}
        self.short_lengths = {len(t) for t in self.short}
        self._windows: dict[int, set] = {}  # length -> every window of that length over all lines

    @classmethod
    def from_file(cls, path: Path, task: ModuleType, ngram: int) -> "Contamination":
        keys: set[str] = set()
        lines: list[tuple[str, ...]] = []
        for _, line in utf8_lines(path, "decontaminate"):
            line = line.strip()
            if not line:
                continue
            try:
                keys.add(task.puzzle_key(task.parse_puzzle(json.loads(line))))
                continue
            except (json.JSONDecodeError, ValueError, TypeError, KeyError):
                pass  # not a puzzle of this task: a question
            tokens = words(line)
            if tokens:
                lines.append(tokens)
        if not keys and not lines:
            raise ConfigError("decontaminate", f"{path}: holds no puzzles or questions")
        return cls(task, keys, lines, ngram)

    def summary(self) -> dict:
        return {"puzzles": len(self.keys), "questions": len(self.lines)}

    def _windows_of(self, n: int) -> set:
        if n not in self._windows:
            self._windows[n] = {g for t in self.lines for g in grams(t, n)}
        return self._windows[n]

    def hit(self, puzzle: dict, question: str) -> bool:
        """Whether a record with this puzzle and question is contaminated."""
        if self.keys and self.task.puzzle_key(puzzle) in self.keys:
            return True
        if not self.lines:
            return False
        tokens = words(question)
        if len(tokens) < self.ngram:  # a short question: is it inside a line, whole?
            if tokens and tokens in self._windows_of(len(tokens)):
                return True
        elif any(g in self.long for g in grams(tokens, self.ngram)):
            return True
        # a short line: does it appear whole in the question?
        return any(g in self.short for n in self.short_lengths if n <= len(tokens) for g in grams(tokens, n))
