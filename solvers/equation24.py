"""Equation 24: make the target (24 unless configured) from four digits 1-9 with + - * /
and parentheses, each digit used once.

A puzzle is ``{"digits": [4, 7, 8, 8], "target": 24}``; an answer is an expression such as
``(7 - 8 / 8) * 4``. This module is the worked example of docs/adding-a-task.md: every part
the Task contract (solvers/task.py) asks for, and a few optional ones, in one short file.

The solver plays by whole numbers: it writes a subtraction larger-minus-smaller, a
division only when it is exact, and never makes a 0. So a puzzle that needs a fraction
on the way (3, 3, 8, 8: ``8 / (3 - 8 / 3)``) is one it cannot solve, and the sampler
never draws it. The verifier is lenient on purpose: any expression over the digits whose
exact value is the target is right, fractions on the way included.

The search is depth first over pairs of the numbers left, in a heuristic's order; states
already found dead are not searched again, and with two numbers left the last move is
done in the head (written only when it hits the target). ``max_steps`` bounds the steps a
trace writes, kept or abandoned; a puzzle whose search does not fit is drawn again.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Optional

from solvers import independent
from solvers.arith import exact_value
from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import Event, Recorder

NAME = "equation24"
HEURISTICS = ("closest", "random")  # closest: the move whose result is nearest the target first
ANSWER_KIND = "text"                # the answer is an expression, not an integer


@dataclass
class Config:
    target: int = 24
    heuristic: str = "closest"  # move order: closest | random
    max_steps: int = 20         # steps a trace may write, kept or abandoned (docs/adding-a-task.md: how many fit)

    def __post_init__(self) -> None:
        check_int_range("task.target", self.target, 1, 9 ** 4)  # 9 * 9 * 9 * 9 is the most four digits make
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_int_range("task.max_steps", self.max_steps, 1, 1000)


# ----------------------------------------------------------------------------- puzzles

def question(puzzle: dict) -> str:
    digits = ", ".join(map(str, puzzle["digits"]))
    return (f"Make {puzzle['target']} from the digits {digits}. "
            f"Use each digit exactly once, with + - * / and parentheses.")


def puzzle_key(puzzle: dict) -> str:
    """The same digits in any order are the same puzzle (splits and duplicates use this)."""
    return ",".join(map(str, sorted(puzzle["digits"]))) + "=" + str(puzzle["target"])


def is_heldout(puzzle: dict, config: Config) -> bool:
    return False  # one target: there is no unseen target to hold out


def parse_puzzle(obj: Any) -> dict:
    """A puzzle read from a file (``problems=FILE``), or ValueError naming the bad field."""
    if not isinstance(obj, dict) or set(obj) != {"digits", "target"}:
        raise ValueError(f'a puzzle is {{"digits": [4 digits 1-9], "target": N}}, got {obj!r:.80}')
    digits, target = obj["digits"], obj["target"]
    if not (isinstance(digits, list) and len(digits) == 4 and all(type(d) is int and 1 <= d <= 9 for d in digits)):
        raise ValueError(f"'digits' must be a list of four digits 1-9, got {digits!r}")
    if type(target) is not int or target < 1:
        raise ValueError(f"'target' must be a positive integer, got {target!r}")
    return {"digits": digits, "target": target}


def sample(config: Config, rng: random.Random) -> dict:
    """Four digits that can make the target (checked with a complete search)."""
    for _ in range(1000):
        puzzle = {"digits": [rng.randint(1, 9) for _ in range(4)], "target": config.target}
        if search(puzzle, config, rng, budget=None) is not None:
            return puzzle
    raise ConfigError("task.target", f"no four digits made {config.target} in 1000 draws; try a smaller target")


# ----------------------------------------------------------------------------- search

def _moves(x: int, y: int) -> list[tuple[int, str, int, int]]:
    """(a, op, b, result) for a pair, a >= b: whole, positive results only."""
    a, b = max(x, y), min(x, y)
    moves = [(a, "+", b, a + b), (a, "*", b, a * b)]
    if a > b:
        moves.append((a, "-", b, a - b))
    if a % b == 0:
        moves.append((a, "/", b, a // b))
    return moves


def _join(left: tuple[str, int], op: str, right: tuple[str, int]) -> tuple[str, int]:
    """``left op right`` as (text, precedence) with only the parentheses it needs."""
    p = 2 if op in "*/" else 1
    lt = left[0] if left[1] >= p else f"({left[0]})"
    # a - (b - c) and a / (b * c) keep theirs; a + (b + c) and a * (b * c) do not
    rt = right[0] if right[1] > p or (right[1] == p and op in "+*") else f"({right[0]})"
    return f"{lt} {op} {rt}", p


class _OverBudget(Exception):
    pass


def search(puzzle: dict, config: Config, rng: random.Random, budget: Optional[int]) -> Optional[list[Event]]:
    """The depth-first search, recorded; None when there is no solution or it writes more
    than ``budget`` steps (None: no limit)."""
    target, rec, dead = puzzle["target"], Recorder(), set()

    def write(step: dict) -> None:
        if budget is not None and rec.steps >= budget:
            raise _OverBudget
        rec.step(step)

    def dfs(numbers: list[tuple[int, str, int]]) -> bool:  # (value, expression, precedence)
        values = sorted(n[0] for n in numbers)
        if len(numbers) == 2:  # the last move is done in the head: write it only if it hits
            x, y = sorted(numbers, reverse=True)
            for a, op, b, r in _moves(x[0], y[0]):
                if r == target:
                    write({"a": a, "op": op, "b": b, "result": r, "left": [], "final": True})
                    rec.answer(_join(x[1:], op, y[1:])[0])
                    return True
            return False
        moves = {}  # (a, op, b) -> the move: 8 + 8 from either pair of 8s is one move
        for i in range(len(numbers)):
            for j in range(i + 1, len(numbers)):
                x, y = sorted((numbers[i], numbers[j]), reverse=True)
                rest = [n for k, n in enumerate(numbers) if k not in (i, j)]
                for a, op, b, r in _moves(x[0], y[0]):
                    left = sorted([n[0] for n in rest] + [r])
                    moves.setdefault((a, op, b), (a, op, b, r, left, rest + [(r, *_join(x[1:], op, y[1:]))]))
        moves = list(moves.values())
        if config.heuristic == "random":
            rng.shuffle(moves)
        else:  # closest: the move that leaves a number nearest the target first
            moves.sort(key=lambda m: min(abs(v - target) for v in m[4]))
        for a, op, b, r, left, after in moves:
            if tuple(left) in dead:  # an earlier branch already found these numbers dead
                continue
            write({"a": a, "op": op, "b": b, "result": r, "left": left, "final": False})
            if dfs(after):
                return True
            dead.add(tuple(left))
            rec.backtrack({"left": values})
        return False

    try:
        solved = dfs([(d, str(d), 3) for d in puzzle["digits"]])  # a digit binds tightest: precedence 3
    except _OverBudget:
        return None
    return rec.events if solved else None


def solve(puzzle: dict, config: Config, rng: random.Random) -> Optional[list[Event]]:
    return search(puzzle, config, rng, config.max_steps)


def solve_given(puzzle: dict, config: Config, rng: random.Random) -> tuple[Optional[list[Event]], str]:
    """A puzzle from ``problems=FILE``: its trace, or why not. ``no_solution`` when the complete
    search finds none (by whole numbers: 3, 3, 8, 8), ``unsolved`` when it needs more than max_steps."""
    events = solve(puzzle, config, rng)
    if events is not None:
        return events, ""
    return None, "unsolved" if search(puzzle, config, rng, budget=None) else "no_solution"


# ----------------------------------------------------------------------------- words

# The first phrase of each list is the plain wording (paraphraser=none); the template
# paraphraser draws among them.
STEP_PHRASES = ("{eq}. Left: {left}.\n", "Try {eq}, leaving {left}.\n", "{eq}, so I have {left}.\n",
                "What about {eq}? That leaves {left}.\n")
FINAL_PHRASES = ("{eq}. That is {result}.\n", "And {eq}. Done.\n", "{eq}, the target.\n")
BACK_PHRASES = ("Dead end. Back to {left}.\n", "That cannot work. Back to {left}.\n", "No. Back to {left}.\n")
NOTE_PHRASES = ("({a} {op} {b} leads nowhere.)\n", "(Not {a} {op} {b}.)\n", "({a} {op} {b} = {result} was a dead end.)\n")


def step_phrases(data: dict) -> tuple[str, ...]:
    return FINAL_PHRASES if data["final"] else STEP_PHRASES


def step_slots(data: dict) -> dict:
    return {**data, "eq": f"{data['a']} {data['op']} {data['b']} = {data['result']}",
            "left": ", ".join(map(str, data["left"]))}


def back_slots(state: dict) -> dict:
    return {"left": ", ".join(map(str, state["left"]))}


def note_slots(data: dict, state: dict) -> dict:
    return data


# ----------------------------------------------------------------------------- verifier

def independent_check(puzzle: dict, text: str) -> bool:
    """rejudge's own reading of a raw completion (``CHECKER``), sharing no code with ``verify``:
    24's rules are Countdown's (every number once, the exact value is the target)."""
    return independent.countdown_correct({"numbers": puzzle["digits"], "target": puzzle["target"]}, text)


CHECKER = independent_check


def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` uses each digit exactly once, only + - * / and parentheses, and
    its exact value is the target (sympy does the arithmetic: nothing is eval'd).

    >>> p = {"digits": [3, 3, 8, 8], "target": 24}
    >>> verify(p, "8 / (3 - 8 / 3)"), verify(p, "8 * 3 + 8 - 8"), verify(p, "33 - 8 - 8 / 8")
    (True, False, False)
    """
    if not isinstance(answer, str) or len(answer) > 100:
        return False
    used = sorted(int(d) for d in re.findall(r"\d+", answer))
    return used == sorted(puzzle["digits"]) and exact_value(answer) == puzzle["target"]
