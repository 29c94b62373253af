"""Program-aided traces: computational questions answered by Python programs that really run.

A puzzle is one member of a parameterised family, e.g. ``{"family": "multiples", "a": 3,
"b": 5, "limit": 1000}``: "What is the sum of all the natural numbers below 1000 that are
multiples of 3 or 5?". The answer is an integer (233168), computed by the family's reference
solution: pure Python, written differently from the program in the trace where it can be
(inclusion-exclusion for the multiples, Pascal's triangle for the binomial counts,
``math.comb`` for lattice paths), and checked against brute force in tests/test_program.py.

Families (``Config.families``; each puzzle draws one) and their sizes, kept small so every
program runs in well under a second:

===========  =========================================================  ==================
family       question                                                   parameters
===========  =========================================================  ==================
multiples    sum of the numbers below L that are multiples of a or b    a < b in 2..9, b not
                                                                        a multiple of a;
                                                                        L 10..limit_max
prime        largest prime factor of n                                  n 100..factor_max
digits       sum of the digits of b^e                                   b 2..9, e 10..power_max
binomial     how many C(n, r), 1 <= n <= N, exceed T                    N 10..rows_max,
                                                                        T 10^2..10^6
lattice      monotone paths through a w by h grid                       w, h 2..grid_max
===========  =========================================================  ==================

The trace is written in a tagged format, one line per step (the contract's "a step is a
line"): ``<think>...</think>`` (one line), ``<program>`` / code lines / ``</program>``,
``<output>`` / what the sandbox printed, line by line / ``</output>``, repeated as needed,
then ``<summary>...</summary>`` and ``<boxed>N</boxed>``; the pipeline adds ``Answer: N``.
Every ``<output>`` block holds what ``solvers.sandbox.run`` printed when the solver ran the
program above it (stdout, then stderr), and the validator re-runs each one
(``check_page``).

Dead ends, two kinds:

- a *buggy program* (``p_buggy``): the first program written has a mis-indented line, a
  misspelled name, or an off-by-one bound; its real output (an ``IndentationError``,
  ``NameError`` or ``IndexError`` traceback, or a wrong number) is shown, a think line says
  what is wrong, and the fixed program follows. These stay on the page: a visible fix.
- an *erased line* (``p_erase_line``): while a program that works is being typed, one line is
  first written wrong ("for n in range(1, limit + 1):" where the limit is excluded) and erased
  with backspaces before the program is finished and run. Only programs that run cleanly get
  one, so erasures never move the line numbers of a traceback (a ``notes`` comment left
  where a line was erased would).

In the ``search`` style an erased line stays visible, followed by a "# scratch that line"
comment; ``programs`` drops the line such a comment scratches, so the program the
validator and the reward run is the one the writer meant. Notes (the ``notes`` variant)
are Python comments, so a program with them runs the same.

Heuristics (``Config.heuristic``; both work for every family):

- ``direct``: one plan line, then the program for the question itself.
- ``explore``: first the same program on a small instance of the family (limit 10 to 30, a
  3 by 2 grid, ...), whose answer a person could check by hand; a think line confirms it,
  then the full-size program. Two or three programs per trace instead of one or two.

``max_steps`` counts lines written (kept or erased); the default 80 is above the longest
trace any family writes (docs/tasks.md: "Program-aided traces" gives the measured lengths and
speeds). The small families have few distinct puzzles (lattice 19 x 19 = 361, binomial
91 x 5 = 455), so a large dataset repeats them; repeats are dropped as duplicates and the
pipeline draws more.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from solvers.config import ConfigError, check_choice, check_int_range
from solvers.program_families import (FAMILIES, FAMILY, MAX_ANSWER_CHARS, Family, puzzle_key,  # noqa: F401
                                      reference_answer, verify)
from solvers.program_pages import (CLOSE, MEMORY_MB, SCRATCH, TIMEOUT, _rerun, boxed, execute,  # noqa: F401
                                   insertion, pending_program, program_score, programs, shown, tags_score)
from solvers.task import Tool
from solvers.trace import Event, Recorder

NAME = "program"
HEURISTICS = ("direct", "explore")


@dataclass
class Config:
    families: list[str] = field(default_factory=lambda: list(FAMILIES))  # each puzzle draws one
    limit_max: int = 5000       # multiples: L from 10
    factor_max: int = 1000000   # prime: n from 100 (trial division to 1000: a millisecond)
    power_max: int = 200        # digits: e from 10 (9^200 has 191 digits)
    rows_max: int = 100         # binomial: N from 10
    grid_max: int = 20          # lattice: w and h from 2
    p_buggy: float = 0.3        # chance that the first program has a bug, shown and fixed
    p_erase_line: float = 0.3   # chance that a clean program has a wrong line typed and erased
    heuristic: str = "direct"   # direct | explore (a small case first)
    max_steps: int = 80         # node budget: lines written, kept or erased

    def __post_init__(self) -> None:
        self.families = list(self.families) if not isinstance(self.families, str) else self.families
        if not isinstance(self.families, list) or not self.families:
            raise ConfigError("task.families", f"must be a non-empty list of {', '.join(FAMILIES)}; "
                              f"got {self.families!r}")
        for name in self.families:
            check_choice("task.families[]", name, FAMILIES)
        check_int_range("task.limit_max", self.limit_max, 10, 10**6)
        check_int_range("task.factor_max", self.factor_max, 100, 10**9)
        check_int_range("task.power_max", self.power_max, 10, 1000)
        check_int_range("task.rows_max", self.rows_max, 10, 200)
        check_int_range("task.grid_max", self.grid_max, 2, 30)
        for key in ("p_buggy", "p_erase_line"):
            p = getattr(self, key)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ConfigError(f"task.{key}", f"must be a probability from 0 to 1, got {p!r}")
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_int_range("task.max_steps", self.max_steps, 1, 10**6)


# ----------------------------------------------------------------------------- puzzles

def question(puzzle: dict) -> str:
    return FAMILY[puzzle["family"]].question(puzzle)


def is_heldout(puzzle: dict, config: Config) -> bool:
    return False


def parse_puzzle(obj: Any) -> dict:
    """Check a puzzle read from a file; raise ValueError naming the field that is wrong.

    >>> parse_puzzle({"family": "prime", "n": 13195})
    {'family': 'prime', 'n': 13195}
    >>> parse_puzzle({"family": "prime", "n": 10**12})
    Traceback (most recent call last):
    ...
    ValueError: 'n' must be an integer from 2 to 1000000000, got 1000000000000
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object like {{\"family\": \"prime\", \"n\": 13195}}, got {type(obj).__name__}")
    family = obj.get("family")
    if family not in FAMILY:
        raise ValueError(f"'family' must be one of {', '.join(FAMILIES)}; got {family!r}")
    bounds = FAMILY[family].bounds
    unknown = set(obj) - {"family", *bounds}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; a {family} puzzle has {', '.join(bounds)}")
    puzzle = {"family": family}
    for key, (lo, hi) in bounds.items():  # bounds keep every reference solution fast
        value = obj.get(key)
        if type(value) is not int or not lo <= value <= hi:
            raise ValueError(f"'{key}' must be an integer from {lo} to {hi}, got {value!r}")
        puzzle[key] = value
    if family == "multiples" and puzzle["a"] == puzzle["b"]:
        raise ValueError("'b' must differ from 'a'")
    return puzzle


def sample(config: Config, rng: random.Random) -> dict:
    family = rng.choice(config.families)
    return {"family": family, **FAMILY[family].sample(config, rng)}


def check_page(puzzle: dict, page: str) -> Optional[str]:
    """The validator's hook: re-run every program on the collapsed page and compare what it
    prints with the ``<output>`` block under it; the ``<boxed>`` value must be the answer
    line's. Returns the reason for a rejection, or None.

    >>> page = "<program>\\nprint(6 * 7)\\n</program>\\n<output>\\n42\\n</output>\\n<boxed>42</boxed>\\nAnswer: 42"
    >>> check_page({}, page), check_page({}, page.replace("42\\n</output>", "41\\n</output>"))
    (None, 'program_output_mismatch')
    >>> check_page({}, page.replace("<boxed>42", "<boxed>43"))
    'boxed_mismatch'
    """
    found = programs(page)
    if not found:
        return "program_output_mismatch"
    for code, output in found:
        if output is None or list(_rerun(code)) != output:
            return "program_output_mismatch"
    last = page.rsplit("\n", 1)[-1]
    if not last.startswith("Answer: ") or boxed(page) != last[len("Answer: "):].strip():
        return "boxed_mismatch"
    return None


# ----------------------------------------------------------------------------- search

def _block(rec: Recorder, tag: str, lines: list[str]) -> None:
    rec.step({"kind": "line", "text": f"<{tag}>", "final": True})
    for line in lines:
        rec.step({"kind": "line", "text": line, "final": True})
    rec.step({"kind": "line", "text": f"</{tag}>", "final": True})


def _bug(family: Family, case: dict, lines: list[str], rng: random.Random) -> tuple[list[str], dict]:
    """A buggy version of a program, and what is wrong with it (for the fix's think line).
    An off-by-one is chosen only where it changes what the program prints (a limit that is
    itself a multiple, a last row with coefficients above the threshold)."""
    shows = family.off_by_one is not None and family.off_by_one_shows(case)
    kinds = ["indent", "name"] + (["off_by_one"] if shows else [])
    kind = rng.choice(kinds)
    bad = list(lines)
    if kind == "off_by_one":
        i, wrong, _ = family.off_by_one
        bad[i] = wrong
        return bad, {"bug": "off_by_one", "line": i + 1}
    if kind == "name":  # misspell the printed name: swap its last two letters
        name = re.match(r"print\((\w+)", lines[-1])[1]
        typo = name[:-2] + name[-1] + name[-2]
        bad[-1] = lines[-1].replace(name, typo, 1)
        return bad, {"bug": "name", "wrong": typo, "right": name, "line": len(lines)}
    # indentation: a block's first body line loses its indent, or a top-level line gains one
    bodies = [i for i in range(1, len(lines)) if lines[i - 1].endswith(":")]
    # an extra indent is an error only after a line that is itself not indented
    tops = [i for i in range(1, len(lines)) if not lines[i].startswith(" ") and not lines[i - 1].startswith(" ")
            and not lines[i - 1].endswith(":")]
    if bodies and (not tops or rng.random() < 0.6):
        i = rng.choice(bodies)
        bad[i] = lines[i - 1][: len(lines[i - 1]) - len(lines[i - 1].lstrip())] + lines[i].lstrip()
        return bad, {"bug": "indent_missing", "line": i + 1, "block": i}
    i = rng.choice(tops)
    bad[i] = "    " + lines[i]
    return bad, {"bug": "indent_extra", "line": i + 1}


def solve(puzzle: dict, config: Config, rng: random.Random) -> list[Event] | None:
    """Write the trace and run its programs in the sandbox. None when the budget runs out or
    a run does not print what it should (a sandbox failure on an overloaded machine)."""
    family = FAMILY[puzzle["family"]]
    params = {k: v for k, v in puzzle.items() if k != "family"}
    rec = Recorder()
    rec.step({"kind": "plan", "family": puzzle["family"], **params, "final": False})
    cases = [params]
    if config.heuristic == "explore":
        small = family.small(params, rng)
        if small != params:
            rec.step({"kind": "small", "family": puzzle["family"], **small, "final": False})
            cases = [small, params]
    buggy = rng.random() < config.p_buggy
    for n, case in enumerate(cases):
        want = family.answer(case)
        lines = family.program(case)
        if buggy and n == 0:
            bad, what = _bug(family, case, lines, rng)
            _block(rec, "program", bad)
            out = execute("\n".join(bad))
            _block(rec, "output", out)
            if not out or out == [str(want)]:
                return None  # the bug did not show: not a trace worth writing
            error = re.match(r"(\w+Error)\b", out[-1])
            rec.step({"kind": "fix", **what, "error": error[1] if error else None, "got": out[-1],
                      "family": puzzle["family"], "final": True})
        rec.step({"kind": "line", "text": "<program>", "final": True})
        erase = rng.random() < config.p_erase_line and family.wrong_lines
        where = rng.choice(family.wrong_lines) if erase else None
        for i, line in enumerate(lines):
            if where and i == where[0]:
                rec.step({"kind": "wrong", "text": where[1], "why": where[2], "final": False})
                rec.backtrack({"line": i + 1})
            rec.step({"kind": "line", "text": line, "final": True})
        rec.step({"kind": "line", "text": "</program>", "final": True})
        out = execute("\n".join(lines))
        _block(rec, "output", out)
        if out != [str(want)]:
            return None
        if n + 1 < len(cases):
            rec.step({"kind": "checked", "value": want, "final": False})
    answer = family.answer(params)
    rec.step({"kind": "summary", "family": puzzle["family"], **params, "answer": answer, "final": True})
    rec.step({"kind": "line", "text": f"<boxed>{answer}</boxed>", "final": True})
    if rec.steps > config.max_steps:
        return None
    rec.answer(answer)
    return rec.events


# ----------------------------------------------------------------------------- words

# Code, output and tag lines are written verbatim: one phrase, "{text}\n".
LINE_PHRASES = ("{text}\n",)
SMALL_PHRASES = (
    "<think>First try the program on a small case, {case}, that can be checked by hand.</think>\n",
    "<think>Check the method on {case} before the real size.</think>\n",
    "<think>A small case first, {case}, to make sure the program is right.</think>\n",
    "<think>Let me test on {case} first.</think>\n",
)
CHECKED_PHRASES = (
    "<think>{value} is right for the small case. Now the full size.</think>\n",
    "<think>The small case gives {value}, as expected. On to the real question.</think>\n",
    "<think>{value} checks out. Run it at full size.</think>\n",
    "<think>Good, {value}. Now the actual numbers.</think>\n",
)
FIX_PHRASES = (
    "<think>{problem}: {why}. Fix it and run again.</think>\n",
    "<think>That gives {problem}; {why}. Let me fix that.</think>\n",
    "<think>{problem}. The cause: {why}. Fixing it.</think>\n",
    "<think>{problem}, because {why}. Again, fixed.</think>\n",
)
SUMMARY_PHRASES = (
    "<summary>The program printed {answer}, the {what}.</summary>\n",
    "<summary>{answer} is the {what}.</summary>\n",
    "<summary>The run gives {answer}: the {what}.</summary>\n",
    "<summary>So the {what} is {answer}.</summary>\n",
)
# The search style's back line: a comment that scratches the code line above it (see programs).
BACK_PHRASES = (
    "# scratch that line\n",
    "# scratch the line above\n",
    "# scratch that, line {line} again\n",
)
# The notes variant: kept after an erased line, inside the program, so a comment.
NOTE_PHRASES = (
    "# not `{wrong}`: {why}\n",
    "# ({why})\n",
    "# careful: {why}\n",
)


def step_phrases(data: dict) -> tuple[str, ...]:
    kind = data["kind"]
    if kind in ("line", "wrong"):
        return LINE_PHRASES
    if kind == "plan":
        return tuple(f"<think>{p}</think>\n" for p in FAMILY[data["family"]].plans)
    return {"small": SMALL_PHRASES, "checked": CHECKED_PHRASES, "fix": FIX_PHRASES,
            "summary": SUMMARY_PHRASES}[kind]


def _params(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("kind", "family", "final", "answer")}


def step_slots(data: dict) -> dict:
    kind = data["kind"]
    if kind in ("line", "wrong", "checked"):
        return data
    family = FAMILY[data["family"]]
    if kind in ("plan", "small"):
        return {**data, "case": family.case(_params(data))}
    if kind == "summary":
        return {**data, "what": family.what(_params(data))}
    bug = data["bug"]  # fix
    problem = data["error"] or f"{data['got']} cannot be right"
    why = {"off_by_one": lambda: family.off_by_one[2],
           "name": lambda: f"{data['wrong']} is a typo for {data['right']}",
           "indent_missing": lambda: f"line {data['line']} is the body of line {data['block']} and must be indented",
           "indent_extra": lambda: f"line {data['line']} should not be indented"}[bug]()
    return {**data, "problem": problem, "why": why}


def back_slots(state: dict) -> dict:
    return state


def note_slots(data: dict, state: dict) -> dict:
    return {"wrong": data["text"].strip(), "why": data["why"]}


# ----------------------------------------------------------------------------- the task's optional parts

RECORDABLE = False  # the recorder's page cannot run a person's programs
REASONS = ("program_output_mismatch", "boxed_mismatch")  # what check_page returns
REWARDS = {"program": program_score, "tags": tags_score}
GRPO_REWARDS = (("program", 1.0), ("tags", 0.2))  # the sandboxed last program + the tagged format
TOOL = Tool(close=CLOSE, pending=pending_program, run=insertion)
