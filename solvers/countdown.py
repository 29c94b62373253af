"""Countdown: combine all the numbers with + - * / to hit the target.

A puzzle is ``{"numbers": [25, 8, 3, 5], "target": 46}``; an answer is an expression that
uses every number exactly once, e.g. ``(25 - 8) * 3 - 5``.

Rules, as the solver plays them (the classic game's): every intermediate result is a
positive integer. Subtraction is written larger-minus-smaller and only when that is > 0
(``8 - 8 = 0`` is never useful and ``3 - 8`` is never taken); division only when it is
exact. The verifier is more lenient on purpose: it accepts any expression over the numbers,
each used exactly once, whose exact rational value is the target, so a model's correct
answer with a negative or fractional intermediate is still correct.

The search is a depth-first search over pairwise combinations. Its moves are ordered by a
heuristic (``sum``: how far the remaining numbers' sum is from the target; ``closest``:
how far the nearest remaining number is from the target; ``random``); states already found
dead are not searched again; with two numbers left, the last move is checked in the head
(no step is written unless it hits the target), as a person would. ``max_steps`` is the
node budget: the most steps the trace may write, kept or abandoned. A puzzle the search
cannot solve within it is not used (the sampler draws again), so every trace fits the
length budget it was sized for.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from solvers import independent
from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import Event, Recorder

NAME = "countdown"
HEURISTICS = ("closest", "sum", "random")
ANSWER_KIND = "text"  # an expression such as "(2 + 3) * 4"
LAYOUTS = ("self_backtracking", "stream_of_search")  # other projects' layouts: generate/interop.py
CHECKER = independent.countdown_correct  # python -m train.rejudge's own check, sharing no code with verify


@dataclass
class Config:
    n_numbers: int = 4  # 3 to 6 numbers per puzzle
    numbers_min: int = 1
    numbers_max: int = 25
    target_min: int = 10
    target_max: int = 100
    heuristic: str = "closest"  # move order: closest | sum | random
    max_steps: int = 20  # node budget: steps written, kept or abandoned
    holdout_targets: list[int] = field(default_factory=list)  # only in the test_unseen split

    def __post_init__(self) -> None:
        check_int_range("task.n_numbers", self.n_numbers, 3, 6)
        check_int_range("task.numbers_min", self.numbers_min, 1, 10**6)
        check_int_range("task.numbers_max", self.numbers_max, self.numbers_min, 10**6)
        check_int_range("task.target_min", self.target_min, 1, 10**9)
        check_int_range("task.target_max", self.target_max, self.target_min, 10**9)
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_int_range("task.max_steps", self.max_steps, 1, 10**6)
        self.holdout_targets = list(self.holdout_targets)
        for t in self.holdout_targets:
            check_int_range("task.holdout_targets[]", t, self.target_min, self.target_max)


# ----------------------------------------------------------------------------- puzzles

def question(puzzle: dict) -> str:
    nums = ", ".join(str(n) for n in puzzle["numbers"])
    return (f"Use the numbers {nums} to make {puzzle['target']}. "
            f"Use each number exactly once, with + - * /.")


def puzzle_key(puzzle: dict) -> str:
    """Canonical content of a puzzle: the same numbers in any order are the same puzzle."""
    return ",".join(map(str, sorted(puzzle["numbers"]))) + "=" + str(puzzle["target"])


def is_heldout(puzzle: dict, config: Config) -> bool:
    return puzzle["target"] in config.holdout_targets


def parse_puzzle(obj: Any) -> dict:
    """Check a puzzle read from a file; raise ValueError naming the field that is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object like {{\"numbers\": [...], \"target\": 39}}, got {type(obj).__name__}")
    unknown = set(obj) - {"numbers", "target"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; a puzzle has 'numbers' and 'target'")
    numbers, target = obj.get("numbers"), obj.get("target")
    if not isinstance(numbers, list) or not 2 <= len(numbers) <= 6:
        raise ValueError("'numbers' must be a list of 2 to 6 positive integers")
    if not all(type(n) is int and n > 0 for n in numbers):
        raise ValueError(f"'numbers' must be positive integers, got {numbers}")
    if type(target) is not int or target <= 0:
        raise ValueError(f"'target' must be a positive integer, got {target!r}")
    return {"numbers": list(numbers), "target": target}


def _combine(a: int, b: int) -> list[tuple[int, str, int]]:
    """The legal moves on a pair, as (left, op, right) with a >= b: results stay positive
    integers."""
    if a < b:
        a, b = b, a
    moves = [(a, "+", b), (a, "*", b)]
    if a != b:
        moves.append((a, "-", b))
    if a % b == 0:
        moves.append((a, "/", b))
    return moves


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b
    return a // b


def sample(config: Config, rng: random.Random) -> dict:
    """A solvable puzzle: draw the numbers, then build the target by combining them at
    random (so a solution exists by construction) until it lands in the target range."""
    lo, hi = config.numbers_min, config.numbers_max
    for _ in range(10_000):
        numbers = [rng.randint(lo, hi) for _ in range(config.n_numbers)]
        pool = list(numbers)
        while len(pool) > 1:
            i, j = rng.sample(range(len(pool)), 2)
            a, op, b = rng.choice(_combine(pool[i], pool[j]))
            pool = [v for k, v in enumerate(pool) if k not in (i, j)] + [_apply(a, op, b)]
        if config.target_min <= pool[0] <= config.target_max:
            return {"numbers": numbers, "target": pool[0]}
    raise ConfigError("task.target_min", "no reachable target in the target range after 10000 draws; "
                      "widen task.target_min..task.target_max or the number range")


# ----------------------------------------------------------------------------- search

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3


def _expr(left: tuple, op: str, right: tuple) -> tuple[str, int]:
    """Join two (text, precedence) expressions with the fewest parentheses."""
    p = _PREC[op]
    lt = left[0] if left[1] >= p else f"({left[0]})"
    # a - (b + c) and a / (b * c) need the parentheses; a + (b + c) does not.
    rt = right[0] if right[1] > p or (right[1] == p and op in "+*") else f"({right[0]})"
    return f"{lt} {op} {rt}", p


def answer_expression(numbers: list[int], moves: list[tuple[int, str, int]]) -> str:
    """The answer a sequence of moves makes: each move ``(a, op, b)`` takes a number ``a``
    and a number ``b`` from what is left and puts back the result. Raises ValueError when a
    move uses a number that is not there. Used to turn imported searches into answers.

    >>> answer_expression([25, 8, 3, 5], [(25, "-", 8), (17, "*", 3), (51, "-", 5)])
    '(25 - 8) * 3 - 5'
    """
    pool = [(n, str(n), _ATOM) for n in numbers]
    for a, op, b in moves:
        i = next((k for k, v in enumerate(pool) if v[0] == a), None)
        j = next((k for k, v in enumerate(pool) if v[0] == b and k != i), None)
        if i is None or j is None:
            raise ValueError(f"{a} {op} {b}: {a if i is None else b} is not among {[v[0] for v in pool]}")
        text, prec = _expr(pool[i][1:], op, pool[j][1:])
        value = Fraction(a) / b if op == "/" else _apply(a, op, b)
        pool = [v for k, v in enumerate(pool) if k not in (i, j)] + [(value, text, prec)]
    return pool[-1][1]


class _OutOfBudget(Exception):
    pass


def solve(puzzle: dict, config: Config, rng: random.Random) -> list[Event] | None:
    """Depth-first search, recorded. Returns the events, or None when the budget runs out
    or the puzzle has no solution."""
    target = puzzle["target"]
    rec = Recorder()
    dead: set[tuple[int, ...]] = set()
    heuristic = config.heuristic

    def order(moves: list) -> list:
        if heuristic == "random":
            rng.shuffle(moves)
        elif heuristic == "sum":
            moves.sort(key=lambda m: abs(sum(m[4]) - target))
        else:  # closest
            moves.sort(key=lambda m: min(abs(v - target) for v in m[4]))
        return moves

    def dfs(state: list[tuple[int, str, int]]) -> bool:
        values = sorted(v for v, _, _ in state)
        if len(state) == 2:
            (x, xe, xp), (y, ye, yp) = state
            if x < y:
                (x, xe, xp), (y, ye, yp) = (y, ye, yp), (x, xe, xp)
            for a, op, b in _combine(x, y):
                if _apply(a, op, b) == target:
                    if rec.steps >= config.max_steps:  # the final step counts against the budget too
                        raise _OutOfBudget
                    rec.step({"a": a, "op": op, "b": b, "result": target, "left": [], "final": True})
                    rec.answer(_expr((xe, xp), op, (ye, yp))[0])
                    return True
            return False
        moves = []
        seen: set[tuple] = set()
        for i in range(len(state)):
            for j in range(i + 1, len(state)):
                (x, xe, xp), (y, ye, yp) = state[i], state[j]
                if x < y:
                    (x, xe, xp), (y, ye, yp) = (y, ye, yp), (x, xe, xp)
                rest = [s for k, s in enumerate(state) if k != i and k != j]
                for a, op, b in _combine(x, y):
                    r = _apply(a, op, b)
                    left = tuple(sorted([v for v, _, _ in rest] + [r]))
                    if left in dead or (a, op, b, left) in seen:
                        continue
                    seen.add((a, op, b, left))
                    moves.append((a, op, b, r, left, rest, (xe, xp), (ye, yp)))
        for a, op, b, r, left, rest, xl, yr in order(moves):
            if left in dead:  # found dead by an earlier sibling's subtree
                continue
            if rec.steps >= config.max_steps:
                raise _OutOfBudget
            rec.step({"a": a, "op": op, "b": b, "result": r, "left": list(left), "final": False})
            text, prec = _expr(xl, op, yr)
            if dfs(rest + [(r, text, prec)]):
                return True
            dead.add(left)
            rec.backtrack({"left": values})
        return False

    start = [(n, str(n), _ATOM) for n in puzzle["numbers"]]
    try:
        if len(start) == 1:
            return None
        solved = dfs(start)
    except _OutOfBudget:
        return None
    return rec.events if solved else None


# ----------------------------------------------------------------------------- words

# The first phrase of each list is the plain wording (paraphraser=none); the template
# paraphraser picks among them with the item's randomness.
STEP_PHRASES = (
    "{eq}. Left: {left}.\n",
    "Let me try {eq}. That leaves {left}.\n",
    "Try {eq}, leaving {left}.\n",
    "{eq}, so now I have {left}.\n",
    "What about {eq}? Then I have {left}.\n",
    "Combine {a} and {b}: {eq}. Remaining: {left}.\n",
    "How about {eq}? Numbers left: {left}.\n",
    "Maybe {eq}. Now {left}.\n",
)
FINAL_PHRASES = (
    "{eq}. That is the target.\n",
    "{eq}. That's {result}!\n",
    "And {eq}, which hits the target.\n",
    "Finally {eq}. Done.\n",
    "{eq}, exactly the target.\n",
)
BACK_PHRASES = (
    "Dead end. Back to {left}.\n",
    "That doesn't work. Back to {left}.\n",
    "No luck there; back to {left}.\n",
    "That fails, so back to {left}.\n",
)


# The notes variant: kept after a dead end is erased, about the move that led into it.
NOTE_PHRASES = (
    "({a} {op} {b} leads nowhere.)\n",
    "(Not {a} {op} {b}.)\n",
    "({a} {op} {b} = {result} was a dead end.)\n",
    "(Tried {a} {op} {b}: no good.)\n",
)


def step_slots(data: dict) -> dict:
    eq = f"{data['a']} {data['op']} {data['b']} = {data['result']}"
    return {**data, "eq": eq, "left": ", ".join(map(str, data["left"]))}


def step_phrases(data: dict) -> tuple[str, ...]:
    return FINAL_PHRASES if data.get("final") else STEP_PHRASES


def back_slots(state: dict) -> dict:
    return {"left": ", ".join(map(str, state["left"]))}


def note_slots(data: dict, state: dict) -> dict:
    return data


# ----------------------------------------------------------------------------- verifier

MAX_ANSWER_CHARS = 256
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        op = _OPS[type(node.op)]
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if right == 0:
            raise ZeroDivisionError
        return left / right
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    raise ValueError(f"not allowed in an answer: {ast.dump(node)[:40]}")


def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` is an expression that uses every number of the puzzle exactly
    once (repeated numbers as often as they repeat) and equals the target exactly.

    The text is parsed into a syntax tree and walked by hand: nothing is evaluated by
    Python, and only integers, + - * / and parentheses are accepted.

    >>> p = {"numbers": [4, 4, 6], "target": 14}
    >>> verify(p, "4 + 4 + 6"), verify(p, "4 * 4 - 6 + 4"), verify(p, "8 + 6")
    (True, False, False)
    >>> verify({"numbers": [3, 8, 8], "target": 24}, "8 / (3 - 8 / 3)")
    False
    >>> verify({"numbers": [3, 3, 8, 8], "target": 24}, "8 / (3 - 8 / 3)")
    True
    """
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return False
    text = answer.replace("×", "*").replace("÷", "/").replace("−", "-").strip()
    try:
        tree = ast.parse(text, mode="eval")
        used: list[int] = []
        value = _evaluate(tree.body, used)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, MemoryError):
        return False
    return value == puzzle["target"] and sorted(used) == sorted(puzzle["numbers"])
