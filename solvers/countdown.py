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
how far the nearest remaining number is from the target; ``random``; ``sos_sum`` and
``sos_mult``: Stream of Search's ``sum_heuristic`` and ``mult_heuristic``); states already
found dead are not searched again; with two numbers left, the last move is checked in the
head (no step is written unless it hits the target), as a person would. ``max_steps`` is
the node budget: the most steps the trace may write, kept or abandoned.

A sampled puzzle whose search does not fit that budget is not used (the sampler draws
again). A given puzzle (``solve_given``, for ``problems=FILE``) is searched to the end
instead: ``no_solution`` when the complete search proves there is none, else a trace cut
from that search (``trim``): the path that works plus as many of the dead ends the search
really met as fit the budget, in the order it met them. The cut trace is the real search
restricted to the branches that lead to the dead ends kept, so it is still a depth-first
search, only one that left some branches untried.

``dead_ends`` is the dial for how much a trace backtracks, whatever the puzzle: ``null``
(the search as it ran, the default), a number, a range ``[lo, hi]`` or a distribution
``{number: weight}`` of dead ends to show. A trace shows fewer when the search met fewer
or when more would not fit ``max_steps``.

Over 400 lines because a task is one module (solvers/task.py): Countdown's puzzles, its
depth-first search and the cutting of a complete search to budget, wording and verifier.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

from solvers import independent
from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import Answer, Backtrack, Event, Recorder, Step  # noqa: F401 (Answer: the doctests' events)

NAME = "countdown"
HEURISTICS = ("closest", "sum", "random")  # drawn from by mix=true
# Stream of Search's heuristics (src/countdown_utils.py), as move orders; not drawn by mix.
SOS_HEURISTICS = {"sos_sum": "sum_heuristic", "sos_mult": "mult_heuristic"}
ANSWER_KIND = "text"  # an expression such as "(2 + 3) * 4"
LAYOUTS = ("self_backtracking", "self_backtracking_search", "stream_of_search")  # generate/interop.py
CHECKER = independent.countdown_correct  # python -m train.rejudge's own check, sharing no code with verify


@dataclass
class Config:
    n_numbers: int = 4  # 3 to 6 numbers per puzzle
    numbers_min: int = 1
    numbers_max: int = 25
    target_min: int = 10
    target_max: int = 100
    heuristic: str = "closest"  # move order: closest | sum | random | sos_sum | sos_mult
    max_steps: int = 20  # node budget: steps written, kept or abandoned
    holdout_targets: list[int] = field(default_factory=list)  # only in the test_unseen split
    dead_ends: Any = None  # dial: null (as searched) | n | [lo, hi] | {n: weight}
    search_limit: int = 200_000  # steps a complete search may take before a puzzle is "unsolved"
    sb_backtrack_samples: int = 1  # layout=self_backtracking: backtrack samples per puzzle ...
    sb_backtrack_ratio: float = 1.0  # ... for this share of puzzles (the others: a solution sample only)

    def __post_init__(self) -> None:
        check_int_range("task.n_numbers", self.n_numbers, 3, 6)
        check_int_range("task.numbers_min", self.numbers_min, 1, 10**6)
        check_int_range("task.numbers_max", self.numbers_max, self.numbers_min, 10**6)
        check_int_range("task.target_min", self.target_min, 1, 10**9)
        check_int_range("task.target_max", self.target_max, self.target_min, 10**9)
        check_choice("task.heuristic", self.heuristic, HEURISTICS + tuple(SOS_HEURISTICS))
        check_int_range("task.max_steps", self.max_steps, 1, 10**6)
        check_int_range("task.search_limit", self.search_limit, 1, 10**9)
        self.dead_ends = _check_dial(self.dead_ends)
        check_int_range("task.sb_backtrack_samples", self.sb_backtrack_samples, 0, 10**3)
        r = self.sb_backtrack_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
            raise ConfigError("task.sb_backtrack_ratio", f"must be a share from 0 to 1, got {r!r}")
        self.sb_backtrack_ratio = float(r)
        self.holdout_targets = list(self.holdout_targets)
        for t in self.holdout_targets:
            check_int_range("task.holdout_targets[]", t, self.target_min, self.target_max)


def _check_dial(value: Any) -> Any:
    """The ``dead_ends`` dial, checked: None, an int, ``[lo, hi]``, or ``{n: weight}`` (kept
    with text keys, so that it reads back the same from the manifest's JSON)."""
    key = "task.dead_ends"
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        check_int_range(key, value, 0, 10**6)
        return value
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(key, f"a range is [lo, hi], got {list(value)}")
        check_int_range(key + "[0]", value[0], 0, 10**6)
        check_int_range(key + "[1]", value[1], value[0], 10**6)
        return [value[0], value[1]]
    if isinstance(value, dict):
        out = {}
        for k, w in value.items():
            try:
                n = int(k)
            except (TypeError, ValueError):
                raise ConfigError(key, f"a distribution maps numbers of dead ends to weights; {k!r} is not a number") from None
            check_int_range(f"{key}.{k}", n, 0, 10**6)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ConfigError(f"{key}.{k}", f"a weight must be a number >= 0, got {w!r}")
            out[str(n)] = float(w)
        if not out or sum(out.values()) <= 0:
            raise ConfigError(key, "a distribution needs at least one weight > 0")
        return out
    raise ConfigError(key, f"must be null, a number, [lo, hi] or {{number: weight}}; got {value!r}")


def draw_dead_ends(config: Config, rng: random.Random) -> Optional[int]:
    """How many dead ends this trace should show, drawn from the dial (None: as searched).

    >>> draw_dead_ends(Config(dead_ends=3), random.Random(0)), draw_dead_ends(Config(), random.Random(0))
    (3, None)
    """
    d = config.dead_ends
    if d is None or isinstance(d, int):
        return d
    if isinstance(d, list):
        return rng.randint(d[0], d[1])
    keys = sorted(d, key=int)
    return int(rng.choices(keys, weights=[d[k] for k in keys])[0])


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


def _sos_sum(nums, target: int) -> float:
    # Stream of Search's sum_heuristic: the mean distance of the numbers from the target
    return abs(nums[0] - target) if len(nums) == 1 else sum(abs(n - target) for n in nums) / len(nums)


def _sos_mult(nums, target: int) -> float:
    # Stream of Search's mult_heuristic: the distance of each number from its nearest factor
    factors = [i for i in range(2, target + 1) if target % i == 0] or [target]
    return sum(min(abs(n - f) for f in factors) for n in nums)


def search(puzzle: dict, config: Config, rng: random.Random,
           budget: Optional[int]) -> tuple[Optional[list[Event]], str]:
    """Depth-first search, recorded: ``(events, "")`` when it reaches the target within
    ``budget`` steps written, else ``(None, why)`` with why ``"over_budget"`` or, when the
    search ran to the end, ``"no_solution"``."""
    target = puzzle["target"]
    rec = Recorder()
    dead: set[tuple[int, ...]] = set()
    heuristic = config.heuristic
    budget = config.search_limit if budget is None else budget

    def order(moves: list) -> list:
        if heuristic == "random":
            rng.shuffle(moves)
        elif heuristic == "sum":
            moves.sort(key=lambda m: abs(sum(m[4]) - target))
        elif heuristic == "sos_sum":
            moves.sort(key=lambda m: _sos_sum(m[4], target))
        elif heuristic == "sos_mult":
            moves.sort(key=lambda m: _sos_mult(m[4], target))
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
                    if rec.steps >= budget:  # the final step counts against the budget too
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
            if rec.steps >= budget:
                raise _OutOfBudget
            rec.step({"a": a, "op": op, "b": b, "result": r, "left": list(left), "final": False})
            text, prec = _expr(xl, op, yr)
            if dfs(rest + [(r, text, prec)]):
                return True
            dead.add(left)
            rec.backtrack({"left": values})
        return False

    start = [(n, str(n), _ATOM) for n in puzzle["numbers"]]
    if len(start) == 1:
        return None, "no_solution"
    try:
        solved = dfs(start)
    except _OutOfBudget:
        return None, "over_budget"
    return (rec.events, "") if solved else (None, "no_solution")


def trim(events: list[Event], budget: int, dead_ends: Optional[int] = None,
         rng: Optional[random.Random] = None) -> list[Event]:
    """The search ``events`` cut down to the path that works plus some of its dead ends,
    within ``budget`` steps.

    A dead end is a step the search took back right away (a leaf of its tree). Kept are the
    path that works and the dead ends chosen, each with the steps that led to it, in the
    order the search met them: the search restricted to those branches, still depth-first.
    ``dead_ends=None`` keeps as many as fit, first met first; a number keeps that many (or
    as many as the search met or fit), chosen at random with ``rng``.

    >>> ev = [Step({"n": 1}), Backtrack(1, "r"), Step({"n": 2}), Step({"n": 3}), Backtrack(1, "2"),
    ...       Step({"n": 4}), Answer(4)]
    >>> [e.data["n"] if isinstance(e, Step) else type(e).__name__ for e in trim(ev, 3)]
    [1, 'Backtrack', 2, 4, 'Answer']
    >>> [e.data["n"] if isinstance(e, Step) else type(e).__name__ for e in trim(ev, 10, 0)]
    [2, 4, 'Answer']
    """
    parent: dict[int, Optional[int]] = {}
    stack: list[int] = []
    leaves: list[int] = []
    for i, e in enumerate(events):
        if isinstance(e, Step):
            parent[i] = stack[-1] if stack else None
            stack.append(i)
            if i + 1 < len(events) and isinstance(events[i + 1], Backtrack):
                leaves.append(i)
        elif isinstance(e, Backtrack):
            del stack[len(stack) - e.k:]
    kept = set(stack)  # the path that works
    if dead_ends is None:
        candidates, want = leaves, len(leaves)
    else:
        candidates, want = (rng or random.Random(0)).sample(leaves, len(leaves)), dead_ends
    shown = 0
    for leaf in candidates:
        if shown >= want:
            break
        chain, node = [], leaf
        while node is not None and node not in kept:
            chain.append(node)
            node = parent[node]
        if len(kept) + len(chain) <= budget:
            kept.update(chain)
            shown += 1
    out: list[Event] = []
    live: list[int] = []
    for i, e in enumerate(events):
        if isinstance(e, Step):
            live.append(i)
            if i in kept:
                out.append(e)
        elif isinstance(e, Backtrack):
            popped = live[len(live) - e.k:]
            del live[len(live) - e.k:]
            k = sum(p in kept for p in popped)
            if k:
                if isinstance(out[-1], Backtrack):  # returns in a row are one return
                    k += out.pop().k
                out.append(Backtrack(k, e.state))
        else:
            out.append(e)
    return out


def solve(puzzle: dict, config: Config, rng: random.Random) -> list[Event] | None:
    """The recorded search of a sampled puzzle, or None when it does not fit ``max_steps``
    (or the puzzle has no solution): the sampler then draws another. With the ``dead_ends``
    dial set, the complete search cut to the dead ends drawn."""
    if config.dead_ends is None:
        return search(puzzle, config, rng, config.max_steps)[0]
    events, _ = solve_given(puzzle, config, rng)
    return events


def solve_given(puzzle: dict, config: Config, rng: random.Random) -> tuple[Optional[list[Event]], str]:
    """``(events, "")`` for a given puzzle, or ``(None, reason)``: ``no_solution`` when the
    complete search proves there is none, ``unsolved`` when it passes ``search_limit``.
    A search that does not fit ``max_steps`` is cut to fit (``trim``)."""
    want = draw_dead_ends(config, rng)
    if want is None:
        events, why = search(puzzle, config, rng, config.max_steps)
        if events is not None:
            return events, ""  # the search as it ran, as for sampled puzzles
    events, why = search(puzzle, config, rng, None)
    if events is None:
        return None, "no_solution" if why == "no_solution" else "unsolved"
    return trim(events, config.max_steps, want, rng), ""


def record_stats(events: list[Event]) -> dict:
    """What a record's stats add for Countdown: the dead ends its trace shows."""
    return {"dead_ends": sum(isinstance(e, Backtrack) for e in events)}


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
