"""Sudoku: fill the grid so that every row, column and box holds each digit once.

A puzzle is ``{"size": 4, "grid": "...4/..31/...2/.1.."}``: rows separated by "/", "." a
blank; 4x4 grids have 2x2 boxes and digits 1-4, 9x9 grids 3x3 boxes and digits 1-9. The
answer is the filled grid in the same form, ``1324/4231/3412/2143``. Every sampled puzzle
has exactly one solution; the verifier does not rely on that: it accepts any full grid
that obeys the rules and keeps every given. A given puzzle (``problems=FILE``) with more than
one is rejected by the validator (``check_page``: ``multiple_solutions``).

Rules, as the solver plays them: a blank's *options* are the digits not yet in its row,
column or box. The search is a depth-first search with forward checking. In a branch it
repeatedly picks a blank (by the heuristic): one option, it is filled ("r2c3 = 4 (only
option)"); more, it guesses ("Guess r1c2 = 3 (options 3, 4).") and searches each option in
turn. After every fill all blanks are checked: a blank with no option left ("r3c1 has no
option left.") ends the branch, and the guess that opened it and everything written after
it are abandoned (in the backspace style, erased); when all of a blank's options fail, the
guess above it falls too. Only *naked singles* are ever deduced, the one deduction a
reader can check from a cell's own row, column and box.

Heuristics (which blank to fill next): ``order`` (default): the first blank in reading
order, options ascending, the way a person goes cell by cell; ``mrv``: the blank with the
fewest options (ties: reading order), options ascending, so every single in the grid is
filled before any guess; ``random``: any blank at random, options in random order.
Measured: mrv never guesses on a unique 4x4 puzzle (0 of 1000 at 8-12 blanks: naked
singles alone solve them all), so it makes clean traces; order and random make the
backtracking ones. ``max_steps`` is the node budget: the most steps a trace may write,
kept or abandoned; a puzzle the search cannot solve within it gives None and the pipeline
draws another.

The sampler fills a grid at random, then empties cells in random order as long as the
puzzle keeps exactly one solution, until ``blanks`` cells are empty (a fresh grid when one
pass cannot get there). Every unique puzzle with k blanks can come out, so the default
(4x4, 11 blanks) can make 284,160 distinct puzzles (counted exhaustively over the 288 4x4
grids; 10 blanks: 1,041,408; 12: 25,728). Trace lengths and speeds: docs/tasks.md, "Sudoku".

Over 400 lines because a task is one module (solvers/task.py): grid, sampler, search, wording
and verifier of Sudoku, read top to bottom.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import Event, Recorder

NAME = "sudoku"
HEURISTICS = ("order", "mrv", "random")
ANSWER_KIND = "text"  # the solved grid
REASONS = ("multiple_solutions",)  # returned by check_page

# Most blanks per size. 4x4: 12 (4 givens is the least that leaves one solution; 71% of
# greedy passes get there). 9x9: greedy removal in random order stops at a minimal puzzle
# with 54-59 blanks (60 passes measured: median 57; 98% reach 55, 18% reach 58), so 58
# costs ~5 fresh grids per puzzle; the 17-given minimum (64 blanks) is out of its reach.
MAX_BLANKS = {4: 12, 9: 58}
BOX = {4: 2, 9: 3}


@dataclass
class Config:
    size: int = 4  # 4 or 9
    # 4x4, 11 blanks, order: 71-73% of traces abandon a guess (10 blanks: 56%, 1,041,408
    # distinct puzzles; 12: 78%, but only 25,728 exist). 11 blanks: 284,160 distinct.
    # 9x9 (100 puzzles each, template wording): order at 25 blanks, max_steps=50: 76% abandon
    # a guess, p95 1,259, max 1,678 characters: the 9x9 setting that fits max_chars=2048
    # (30 blanks: p95 1,692). mrv fits up to ~45 blanks (max_steps=60: p95 1,373) but
    # hardly backtracks (6%). random is wilder: at 40 blanks most puzzles run out of budget.
    blanks: int = 11
    heuristic: str = "order"  # order | mrv | random: which blank to fill next
    # Node budget. 30 keeps every default trace under ~1,650 characters (max over 1000
    # puzzles: 1,577 for order, 1,624 for random) and loses 0.1-0.2% (order) / 1.2%
    # (random) of puzzles to the budget; mrv needs at most 11 steps at 11 blanks.
    max_steps: int = 30

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size not in BOX:
            raise ConfigError("task.size", f"must be 4 or 9, got {self.size!r}")
        check_int_range("task.blanks", self.blanks, 1, MAX_BLANKS[self.size])
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_int_range("task.max_steps", self.max_steps, 1, 10**6)


# ----------------------------------------------------------------------------- grids
# A grid is a flat list of size*size ints, 0 for a blank. Digit d is bit 1 << (d - 1).

def _units(n: int) -> list[tuple[int, int, int]]:
    """(row, column, box) of every cell index."""
    b = BOX[n]
    return [(i // n, i % n, (i // n) // b * b + (i % n) // b) for i in range(n * n)]


def _to_text(cells: list[int], n: int) -> str:
    return "/".join("".join(str(v) if v else "." for v in cells[r * n:(r + 1) * n]) for r in range(n))


def _from_text(text: str, n: int) -> list[int]:
    return [0 if ch == "." else int(ch) for ch in text.replace("/", "")]


def _name(i: int, n: int) -> str:
    return f"r{i // n + 1}c{i % n + 1}"


def _masks(cells: list[int], n: int) -> tuple[list[int], list[int], list[int]] | None:
    """The digits used in each row, column and box; None if a digit repeats in a unit."""
    rows, cols, boxes = [0] * n, [0] * n, [0] * n
    for i, (r, c, b) in enumerate(_units(n)):
        if cells[i]:
            bit = 1 << (cells[i] - 1)
            if (rows[r] | cols[c] | boxes[b]) & bit:
                return None
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
    return rows, cols, boxes


def _digits(mask: int) -> list[int]:
    return [d + 1 for d in range(mask.bit_length()) if mask >> d & 1]


def _count(cells: list[int], n: int, limit: int, rng: random.Random | None = None) -> tuple[int, list[int] | None]:
    """(number of solutions up to ``limit``, the first one found): a fast bitmask DFS on
    the blank with the fewest options. With ``rng`` the options are tried in random order,
    which is how the sampler fills an empty grid at random."""
    units, full = _units(n), (1 << n) - 1
    masks = _masks(cells, n)
    if masks is None:
        return 0, None
    rows, cols, boxes = masks
    cells = list(cells)
    found: list[list[int]] = []

    def dfs() -> int:
        best, best_opts = -1, 0
        for i, v in enumerate(cells):
            if not v:
                r, c, b = units[i]
                opts = full & ~(rows[r] | cols[c] | boxes[b])
                if not opts:
                    return 0
                if best < 0 or bin(opts).count("1") < bin(best_opts).count("1"):
                    best, best_opts = i, opts
        if best < 0:
            if not found:
                found.append(list(cells))
            return 1
        r, c, b = units[best]
        digits = _digits(best_opts)
        if rng is not None:
            rng.shuffle(digits)
        total = 0
        for d in digits:
            bit = 1 << (d - 1)
            cells[best] = d
            rows[r] |= bit; cols[c] |= bit; boxes[b] |= bit
            total += dfs()
            rows[r] ^= bit; cols[c] ^= bit; boxes[b] ^= bit
            cells[best] = 0
            if total >= limit:
                break
        return total

    return dfs(), (found[0] if found else None)


# ----------------------------------------------------------------------------- puzzles

def question(puzzle: dict) -> str:
    n, b = puzzle["size"], BOX[puzzle["size"]]
    # The grid goes last with no full stop after it: a "." there would read as a blank.
    return (f"Fill in this {n}x{n} Sudoku so that each row, column and {b}x{b} box holds "
            f"1-{n} once (. = blank, / ends a row): {puzzle['grid']}")


def puzzle_key(puzzle: dict) -> str:
    return puzzle["grid"]  # the grid text is canonical: its shape gives the size


def is_heldout(puzzle: dict, config: Config) -> bool:
    return False


def parse_puzzle(obj: Any) -> dict:
    """Check a puzzle read from a file; raise ValueError naming the field that is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object like {{\"size\": 4, \"grid\": \"1..4/..1./...2/.3..\"}}, "
                         f"got {type(obj).__name__}")
    unknown = set(obj) - {"size", "grid"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; a puzzle has 'size' and 'grid'")
    n, grid = obj.get("size"), obj.get("grid")
    if type(n) is not int or n not in BOX:
        raise ValueError(f"'size' must be 4 or 9, got {n!r}")
    if not isinstance(grid, str):
        raise ValueError(f"'grid' must be a string of {n} rows separated by '/', got {type(grid).__name__}")
    rows = grid.split("/")
    allowed = set(".123456789"[:n + 1])
    if len(rows) != n or any(len(row) != n or not set(row) <= allowed for row in rows):
        raise ValueError(f"'grid' must be {n} rows of {n} characters from '.' and 1-{n}, "
                         f"separated by '/'; got {grid[:100]!r}")
    if _masks(_from_text(grid, n), n) is None:
        raise ValueError(f"'grid' repeats a digit in a row, column or box: {grid!r}")
    return {"size": n, "grid": grid}


SAMPLE_ATTEMPTS = 200  # fresh grids tried before the blanks are declared out of reach


def sample(config: Config, rng: random.Random) -> dict:
    """A puzzle with exactly one solution and ``blanks`` empty cells: fill a grid at
    random, then empty cells in random order while the solution stays unique."""
    n = config.size
    for _ in range(SAMPLE_ATTEMPTS):
        _, solution = _count([0] * (n * n), n, 1, rng)
        cells = list(solution)
        order = list(range(n * n))
        rng.shuffle(order)
        empty = 0
        for i in order:
            keep, cells[i] = cells[i], 0
            if _count(cells, n, 2)[0] == 1:
                empty += 1
                if empty == config.blanks:
                    return {"size": n, "grid": _to_text(cells, n)}
            else:
                cells[i] = keep
    raise ConfigError("task.blanks", f"no {n}x{n} puzzle with {config.blanks} blanks and one solution "
                      f"after {SAMPLE_ATTEMPTS} grids; lower task.blanks")


# ----------------------------------------------------------------------------- search

class _OutOfBudget(Exception):
    pass


def solve(puzzle: dict, config: Config, rng: random.Random) -> list[Event] | None:
    """Depth-first search with forward checking, recorded. Returns the events, or None
    when the budget runs out or the puzzle has no solution."""
    n = puzzle["size"]
    units, full = _units(n), (1 << n) - 1
    start = _from_text(puzzle["grid"], n)
    masks = _masks(start, n)
    if masks is None or all(start):
        return None
    rec = Recorder()
    solved: list[str] = []  # the full grid, once found
    live = [0]  # steps on the current path: what a backtrack to a guess must abandon

    def write(data: dict) -> None:
        if rec.steps >= config.max_steps:
            raise _OutOfBudget
        rec.step(data)
        live[0] += 1

    def place(cells: list[int], m: tuple, i: int, d: int) -> None:
        r, c, b = units[i]
        cells[i] = d
        bit = 1 << (d - 1)
        m[0][r] |= bit; m[1][c] |= bit; m[2][b] |= bit

    def choose(blanks: list[int], opts: dict) -> int:
        if config.heuristic == "order":
            return blanks[0]
        if config.heuristic == "random":
            return rng.choice(blanks)
        fewest = min(bin(o).count("1") for o in opts.values())
        return next(i for i in blanks if bin(opts[i]).count("1") == fewest)

    def dfs(cells: list[int], m: tuple) -> bool:
        """Fill cells in this branch until it is solved (True), hits a blank with no
        option (False), or must guess; a guess's branches are searched recursively."""
        while True:
            blanks = [i for i, v in enumerate(cells) if not v]
            if not blanks:
                solved.append(_to_text(cells, n))
                return True
            opts = {}
            for i in blanks:
                r, c, b = units[i]
                opts[i] = full & ~(m[0][r] | m[1][c] | m[2][b])
                if not opts[i]:  # forward checking: a dead blank anywhere ends the branch
                    write({"kind": "stuck", "cell": _name(i, n), "final": False})
                    return False
            i = choose(blanks, opts)
            digits = _digits(opts[i])
            if len(digits) == 1:  # no choice here: not a branch point
                place(cells, m, i, digits[0])
                write({"kind": "single", "cell": _name(i, n), "value": digits[0],
                       "final": len(blanks) == 1})
                continue
            tried = list(digits)
            if config.heuristic == "random":
                rng.shuffle(tried)
            mark = live[0]
            for d in tried:
                child, cm = list(cells), tuple(list(x) for x in m)
                place(child, cm, i, d)
                write({"kind": "guess", "cell": _name(i, n), "value": d, "options": digits, "final": False})
                if dfs(child, cm):
                    return True
                for _ in range(live[0] - mark):  # the guess and all it led to
                    rec.backtrack({"cell": _name(i, n), "grid": _to_text(cells, n)})
                live[0] = mark
            return False

    try:
        if not dfs(list(start), tuple(list(x) for x in masks)):
            return None
    except _OutOfBudget:
        return None
    rec.answer(solved[0])
    return rec.events


def check_page(puzzle: dict, page: str) -> Optional[str]:
    """The validator's Sudoku re-check: ``"multiple_solutions"`` when the puzzle has more than
    one solution. Sampled puzzles never do; a given one (``problems=FILE``) may, and then its
    trace ends in one answer of several, a puzzle that teaches guessing.

    >>> check_page({"size": 4, "grid": "...4/..31/...2/.1.."}, "")  # one solution: 1324/4231/3412/2143
    >>> check_page({"size": 4, "grid": "12../34../..../...."}, "")
    'multiple_solutions'
    """
    if not puzzle:
        return None
    n = puzzle["size"]
    count, _ = _count(_from_text(puzzle["grid"], n), n, 2)
    return "multiple_solutions" if count > 1 else None


# ----------------------------------------------------------------------------- words

# The first phrase of each list is the plain wording (paraphraser=none). "r2c3 = 4" never
# reads as arithmetic to the validator: the digits before "=" follow a letter.
SINGLE_PHRASES = (
    "{cell} = {value} (only option)\n",
    "{cell} can only be {value}.\n",
    "Only {value} fits {cell}.\n",
    "{cell} must be {value}.\n",
    "That forces {cell} = {value}.\n",
    "{cell}: only {value} is left.\n",
)
FINAL_PHRASES = (
    "{cell} = {value} (only option). Grid full.\n",
    "Last blank: {cell} = {value}.\n",
    "{cell} must be {value}, and the grid is full.\n",
    "Finally {cell} = {value}. Done.\n",
)
GUESS_PHRASES = (
    "Guess {cell} = {value} (options {options}).\n",
    "{cell} could be {options}. Try {value}.\n",
    "No single left. Try {cell} = {value} (options {options}).\n",
    "Let me guess {cell} = {value}; it could be {options}.\n",
    "Suppose {cell} = {value} ({options} possible).\n",
)
STUCK_PHRASES = (
    "{cell} has no option left.\n",
    "But then nothing fits {cell}.\n",
    "Now {cell} has no digit left. Contradiction.\n",
    "{cell} is stuck: no digit fits.\n",
)
BACK_PHRASES = (
    "Dead end. Back to {cell}.\n",
    "That fails; back to {cell}.\n",
    "Contradiction, so back to {cell}.\n",
    "No good. Back to {cell}.\n",
)
NOTE_PHRASES = (
    "({cell} = {value} fails.)\n",
    "({cell} is not {value}.)\n",
    "({value} in {cell} leads nowhere.)\n",
    "(Not {value} for {cell}.)\n",
)


def step_slots(data: dict) -> dict:
    return {**data, "options": ", ".join(map(str, data.get("options", [])))}


def step_phrases(data: dict) -> tuple[str, ...]:
    if data["kind"] == "stuck":
        return STUCK_PHRASES
    if data["kind"] == "guess":
        return GUESS_PHRASES
    return FINAL_PHRASES if data.get("final") else SINGLE_PHRASES


def back_slots(state: dict) -> dict:
    return {"cell": state["cell"]}


def note_slots(data: dict, state: dict) -> dict:
    # data is the first abandoned step: always the guess made at the cell we are back to.
    return {"cell": data["cell"], "value": data.get("value", "?")}


# ----------------------------------------------------------------------------- verifier

MAX_ANSWER_CHARS = 200  # a 9x9 answer is 89 characters


def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` is a full grid that obeys the rules and keeps every given.

    >>> p = {"size": 4, "grid": "...4/..31/...2/.1.."}
    >>> verify(p, "1324/4231/3412/2143"), verify(p, " 1324/4231/3412/2143\\n")
    (True, True)
    >>> verify(p, "1234/3412/2143/4321")  # a valid grid, but it drops the givens
    False
    """
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return False
    n = puzzle["size"]
    rows = answer.strip().split("/")
    digits = "123456789"[:n]
    if len(rows) != n or any(len(row) != n or not set(row) <= set(digits) for row in rows):
        return False
    cells = _from_text(answer.strip(), n)
    if _masks(cells, n) is None:  # n digits from 1-n with no repeat in a unit: a permutation
        return False
    given = _from_text(puzzle["grid"], n)
    return all(g == 0 or g == c for g, c in zip(given, cells))
