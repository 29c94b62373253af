"""Arithmetic: simple questions with a positive integer answer, solved by guess and check.

Three kinds of question (``Config.kinds``; each puzzle draws one):

- ``division``: ``{"kind": "division", "dividend": 7482, "divisor": 29}``, "What is
  7482 ÷ 29?". The division is exact (the sampler draws divisor and quotient and
  multiplies), so the answer is the quotient, 258.
- ``linear``: ``{"kind": "linear", "equation": "3*x + 7 = 25"}``, "Solve 3x + 7 = 25 for x."
- ``quadratic``: ``{"kind": "quadratic", "equation": "x**2 - 2*x - 15 = 0"}``, "Find the
  positive solution of x^2 - 2x - 15 = 0." The sampler writes ``(x - r)*(a*x + p)``
  expanded (r, p >= 1), with the constant on the right half the time ("x^2 - 2x = 15"):
  one positive root r, one negative root -p/a, so the question has exactly one answer.
  Equations are parsed with sympy and must have integer coefficients and exactly one
  positive solution, an integer and a simple root (checked for sampled and given ones).

Division is long division, one quotient digit per step: the partial dividend is divided by
the divisor, a guessed digit ``g`` is checked with ``g × divisor`` (more than the partial:
too big, erased) and the remainder (the divisor or more: too small, erased); the digit that
fits is kept, and its line ends with bringing down the next digit (there, not at the start
of the next guess, so that erasing a wrong guess does not erase and retype it). A partial
smaller than the divisor gives 0 with no guessing, as a person sees at once. An equation is
solved by trying values of x: each try is evaluated one operation per equation ("4 × 4 =
16, 2 × 4 = 8, 16 - 8 = 8, 8 - 15 = -7"), a wrong one is erased, the one that works is
kept. Whether a wrong x is too big or too small is read from the sign of left - right: with
one simple positive root r and the other root <= 0, that sign on x > 0 is the leading
coefficient's sign exactly when x > r. So the root always lies strictly between the
largest too-small x (0 at first) and the smallest too-big one, and every heuristic below
only tries x inside that bracket: no x is tried twice and every search ends.

Heuristics (``Config.heuristic``; each works for every kind):

=========  ======================================  =====================================
name       division digit                          equation x
=========  ======================================  =====================================
estimate   leading digits of the partial over the  an estimate (linear: right side over
           divisor's leading digit, at most 9      the slope, ignoring the constant;
           (never too small), then one less per    quadratic: sqrt(constant / a) - b/2a),
           overshoot: 74 ÷ 29 -> 7 ÷ 2 -> 3, 2     then the secant through the last two
                                                   tries (a linear one uses x = 0, read
                                                   off the equation, so its second try
                                                   is exact; a quadratic's second try is
                                                   one step toward the root)
bisect     middle of the digits still possible     2, 4, 8, ... until too big, then the
                                                   middle of the bracket
scan       9, 8, 7, ... down to the digit          x = s, 2s, 3s, ... (s = scan_stride)
                                                   until too big, then up by one
random     a random digit from the middle half     2, 4, 8, ... until too big, then a
           of those still possible                 random x in the bracket's middle half
=========  ======================================  =====================================

``max_steps`` is the node budget: guesses written, kept or erased. A puzzle the search
cannot solve within it is not used (the sampler draws again). The most steps each search
writes, counted over every puzzle of the default ranges: division estimate 15, bisect 12,
scan 27 (three digits of 1: nine guesses each); linear estimate 2, quadratic estimate 5,
equations bisect 9, scan 10; random 14 seen in 1,200. The default 20 is above all but
division scan, and drops 3% of scan's puzzles (10% of its divisions), which the
sampler replaces.

Measured with the default config (600 puzzles, template paraphraser, backspace style): 65%
of traces abandon at least one guess (division 45%, linear 90%, quadratic 56%); length
p50 195, p95 492, max 1,213 characters. Under ``mix`` (a heuristic per item, 1,200 items)
the longest trace was 1,928 characters (scan) and none exceeded 2,048. Speed on one core of
a shared 2-core machine, sample + solve + verify: division 27,000-53,000 puzzles/s, linear
and quadratic 460-800/s (sympy's parse, about 1 ms, is most of it); a cached verify 1-3 us.
Distinct puzzles: division 97 divisors x 990
quotients = 96,030; linear 30 roots x 11 slopes x 100 constants = 33,000; quadratic 30 x 30
roots x 2 forms = 1,800 (counted: 1,800 distinct keys in 40,000 draws), so a large dataset
needs a larger ``lead_max`` (3: 5,400) or ``root_max``.

Over 400 lines because a task is one module (solvers/task.py), and this one has three kinds of
question, each with its own search (long division, guessing x, bisecting).
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import Event, Recorder

NAME = "arithmetic"
HEURISTICS = ("estimate", "bisect", "scan", "random")
KINDS = ("division", "linear", "quadratic")


@dataclass
class Config:
    kinds: list[str] = field(default_factory=lambda: list(KINDS))  # each puzzle draws one
    divisor_min: int = 3
    divisor_max: int = 99
    quotient_min: int = 10     # 10..999: 2 or 3 quotient digits
    quotient_max: int = 999
    root_min: int = 1          # the answer of an equation (always positive)
    root_max: int = 30
    slope_min: int = 2         # linear: a in a*x + b = c
    slope_max: int = 12
    constant_max: int = 50     # linear: b, nonzero, from -constant_max to constant_max
    lead_max: int = 1          # quadratic: (x - r)*(a*x + p) with a from 1 to lead_max
    scan_stride: int = 5       # equation scan: 1 tries every x (a root of 30 is 30 lines, ~3000 chars)
    heuristic: str = "estimate"
    max_steps: int = 20        # node budget: guesses written, kept or erased

    def __post_init__(self) -> None:
        self.kinds = list(self.kinds) if not isinstance(self.kinds, str) else self.kinds
        if not isinstance(self.kinds, list) or not self.kinds:
            raise ConfigError("task.kinds", f"must be a non-empty list of {', '.join(KINDS)}; got {self.kinds!r}")
        for kind in self.kinds:
            check_choice("task.kinds[]", kind, KINDS)
        check_int_range("task.divisor_min", self.divisor_min, 1, 10**6)
        check_int_range("task.divisor_max", self.divisor_max, self.divisor_min, 10**6)
        check_int_range("task.quotient_min", self.quotient_min, 1, 10**9)
        check_int_range("task.quotient_max", self.quotient_max, self.quotient_min, 10**9)
        check_int_range("task.root_min", self.root_min, 1, 10**6)
        check_int_range("task.root_max", self.root_max, self.root_min, 10**6)
        check_int_range("task.slope_min", self.slope_min, 1, 10**6)
        check_int_range("task.slope_max", self.slope_max, self.slope_min, 10**6)
        check_int_range("task.constant_max", self.constant_max, 1, 10**9)
        check_int_range("task.lead_max", self.lead_max, 1, 100)
        check_int_range("task.scan_stride", self.scan_stride, 1, 1000)
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_int_range("task.max_steps", self.max_steps, 1, 10**6)


# ----------------------------------------------------------------------------- equations

MAX_EQUATION_CHARS = 120
# Only digits, x, + - * ^ ( ) and spaces reach sympy, so the code parse_expr builds can
# name nothing but x; at most two powers, each a single digit, so "2**9**9" or a tower
# of nested squares cannot make a huge number.
_EQUATION_CHARS = re.compile(r"[0-9x+\-*^() ]+=[0-9x+\-*^() ]+")
_POWER = re.compile(r"(\*\*|\^)\s*(\(|\d\s*\d|\d\s*(\*\*|\^))")  # "**(", "**12", "**9**9"


@functools.lru_cache(maxsize=4096)
def _parse_equation(kind: str, text: str) -> tuple[tuple[int, int, int], int, int, str]:
    """(coefficients of the left side by power, right-hand constant, the answer, canonical
    equation). The canonical form moves every x term to the left and keeps each side's
    constant where it was: "x**2 = 2*x + 15" becomes "x**2 - 2*x = 15". Cached: a parse
    takes about a millisecond, and question, puzzle_key, solve and verify (once per graded
    completion) all need it; a cached verify takes about 1 microsecond."""
    from sympy import Integer, Poly, Symbol
    from sympy.parsing.sympy_parser import (convert_xor, implicit_multiplication, parse_expr,
                                            standard_transformations)
    if len(text) > MAX_EQUATION_CHARS or not _EQUATION_CHARS.fullmatch(text):
        raise ValueError(f"'equation' must be one line like \"3*x + 7 = 25\" (digits, x, + - * ^, "
                         f"parentheses, one '=', at most {MAX_EQUATION_CHARS} characters); got {text[:40]!r}")
    if text.count("**") + text.count("^") > 2 or _POWER.search(text):
        raise ValueError("'equation' may raise to a one-digit power at most twice")
    x = Symbol("x")
    names = {"x": x, "Integer": Integer, "Symbol": Symbol}
    transformations = standard_transformations + (implicit_multiplication, convert_xor)
    try:
        lhs, rhs = (parse_expr(side, local_dict={"x": x}, global_dict=names, transformations=transformations)
                    for side in text.split("="))
        if not lhs.has(x):  # "25 = 3*x + 7": the side with x goes left
            lhs, rhs = rhs, lhs
        left, right = Poly(lhs, x), Poly(rhs, x)
    except Exception as e:  # sympy's parse errors are of many types
        raise ValueError(f"'equation' is not an equation in x: {text[:40]!r} ({type(e).__name__})") from None
    degree = {"linear": 1, "quadratic": 2}[kind]
    whole = left - right
    if whole.degree() != degree:
        raise ValueError(f"'equation' has degree {whole.degree()}, but 'kind' {kind} needs {degree}")
    if not all(c.is_integer for c in whole.all_coeffs() + right.all_coeffs()):
        raise ValueError("'equation' must have integer coefficients")
    c = int(right.coeff_monomial(1))
    coeffs = tuple(int(whole.coeff_monomial(x**p)) + (c if p == 0 else 0) for p in range(3))
    positive = [r for r in _rational_roots(coeffs[0] - c, coeffs[1], coeffs[2]) if r > 0]
    if len(positive) != 1 or positive[0].denominator != 1:
        raise ValueError(f"'equation' must have exactly one positive solution, an integer and a simple "
                         f"root; {text!r} has positive rational roots {[str(r) for r in positive]}")
    canonical = f"{Poly(coeffs[::-1], x).as_expr()} = {c}"
    return coeffs, c, int(positive[0]), canonical


def _rational_roots(k: int, b: int, a: int) -> list[Fraction]:
    """The rational roots of a*x**2 + b*x + k (a may be 0), with multiplicity. Exact integer
    arithmetic: sympy's real_roots factorises and took half of a 7 ms parse. An irrational
    pair of roots holds no integer, so it counts as none."""
    if a == 0:
        return [Fraction(-k, b)]
    disc = b * b - 4 * a * k
    if disc < 0 or math.isqrt(disc) ** 2 != disc:
        return []
    s = math.isqrt(disc)
    return [Fraction(-b - s, 2 * a), Fraction(-b + s, 2 * a)]


def _human(coeffs: tuple[int, int, int], c: int) -> str:
    """ "3x + 7 = 25", "x^2 - 2x - 15 = 0": the notation a question is written in."""
    out = ""
    for p in (2, 1, 0):
        k = coeffs[p]
        if k == 0:
            continue
        mag = abs(k)
        term = str(mag) if p == 0 else ("" if mag == 1 else str(mag)) + ("x^2" if p == 2 else "x")
        out += (" - " if k < 0 else " + ") + term if out else ("-" if k < 0 else "") + term
    return f"{out} = {c}"


def _evaluate(coeffs: tuple[int, int, int], g: int) -> tuple[int, list[str]]:
    """The left side at x = g (g >= 1), one binary operation per written equation; a
    negative term is subtracted ("16 - 8 = 8"), never added as "16 + -8"."""
    parts: list[str] = []
    acc = None
    for p in (2, 1, 0):
        k = coeffs[p]
        if k == 0:
            continue
        base = 1
        if p == 2:
            base = g * g
            parts.append(f"{g} × {g} = {base}")
        elif p == 1:
            base = g
        mag = abs(k) * base
        if p > 0 and abs(k) != 1:
            parts.append(f"{abs(k)} × {base} = {mag}")
        if acc is None:
            acc = mag if k > 0 else -mag
        else:
            new = acc + mag if k > 0 else acc - mag
            parts.append(f"{acc} {'+' if k > 0 else '-'} {mag} = {new}")
            acc = new
    return acc, parts


# ----------------------------------------------------------------------------- puzzles

def question(puzzle: dict) -> str:
    if puzzle["kind"] == "division":
        return f"What is {puzzle['dividend']} ÷ {puzzle['divisor']}?"
    coeffs, c, _, _ = _parse_equation(puzzle["kind"], puzzle["equation"])
    if puzzle["kind"] == "linear":
        return f"Solve {_human(coeffs, c)} for x."
    return f"Find the positive solution of {_human(coeffs, c)}."


def puzzle_key(puzzle: dict) -> str:
    """Canonical content: "division:7482/29", "quadratic:x**2 - 2*x - 15 = 0"."""
    if puzzle["kind"] == "division":
        return f"division:{puzzle['dividend']}/{puzzle['divisor']}"
    return f"{puzzle['kind']}:{_parse_equation(puzzle['kind'], puzzle['equation'])[3]}"


def is_heldout(puzzle: dict, config: Config) -> bool:
    return False


def parse_puzzle(obj: Any) -> dict:
    """Check a puzzle read from a file; raise ValueError naming the field that is wrong.
    An equation comes back in its canonical form (sympy's spelling)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object like {{\"kind\": \"division\", \"dividend\": 7482, "
                         f"\"divisor\": 29}}, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise ValueError(f"'kind' must be one of {', '.join(KINDS)}; got {kind!r}")
    fields = {"kind", "dividend", "divisor"} if kind == "division" else {"kind", "equation"}
    unknown = set(obj) - fields
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; a {kind} puzzle has {sorted(fields)}")
    if kind == "division":
        dividend, divisor = obj.get("dividend"), obj.get("divisor")
        if type(divisor) is not int or divisor < 1:
            raise ValueError(f"'divisor' must be a positive integer, got {divisor!r}")
        if type(dividend) is not int or dividend < 1 or dividend % divisor or dividend >= 10**18:
            raise ValueError(f"'dividend' must be a positive multiple of 'divisor' below 10**18, got {dividend!r}")
        return {"kind": kind, "dividend": dividend, "divisor": divisor}
    equation = obj.get("equation")
    if not isinstance(equation, str):
        raise ValueError(f"'equation' must be a string like \"3*x + 7 = 25\", got {equation!r}")
    return {"kind": kind, "equation": _parse_equation(kind, equation)[3]}


def sample(config: Config, rng: random.Random) -> dict:
    kind = rng.choice(config.kinds)
    if kind == "division":
        divisor = rng.randint(config.divisor_min, config.divisor_max)
        quotient = rng.randint(config.quotient_min, config.quotient_max)
        return {"kind": kind, "dividend": divisor * quotient, "divisor": divisor}
    from sympy import Symbol
    x = Symbol("x")  # sympy writes the equation; _parse_equation checks its roots when it is solved
    r = rng.randint(config.root_min, config.root_max)
    if kind == "linear":
        a = rng.randint(config.slope_min, config.slope_max)
        b = rng.choice([v for v in range(-config.constant_max, config.constant_max + 1) if v != 0])
        return {"kind": kind, "equation": f"{a * x + b} = {a * r + b}"}
    # (x - r)(a x + p): roots r > 0 and -p/a < 0, so exactly one positive solution. The
    # product is expanded by hand: sympy's expand() took 2.4 ms a puzzle, this 0.5 ms. Half
    # the time the constant goes right ("x^2 - 2x = 15"): twice the puzzles, one subtraction
    # fewer a try.
    a = rng.randint(1, config.lead_max)
    p = rng.randint(config.root_min, config.root_max)
    left = a * x**2 + (p - a * r) * x
    if rng.random() < 0.5:
        return {"kind": kind, "equation": f"{left} = {p * r}"}
    return {"kind": kind, "equation": f"{left - p * r} = 0"}


# ----------------------------------------------------------------------------- search

class _OutOfBudget(Exception):
    pass


def solve(puzzle: dict, config: Config, rng: random.Random) -> list[Event] | None:
    """Guess and check, recorded. Returns the events, or None when the budget runs out."""
    rec = Recorder()

    def step(data: dict) -> None:
        if rec.steps >= config.max_steps:
            raise _OutOfBudget
        rec.step(data)

    try:
        if puzzle["kind"] == "division":
            _long_division(puzzle["dividend"], puzzle["divisor"], config, rng, rec, step)
        else:
            _guess_x(puzzle, config, rng, rec, step)
    except _OutOfBudget:
        return None
    return rec.events


def _long_division(dividend: int, d: int, config: Config, rng: random.Random, rec: Recorder, step) -> None:
    digits = str(dividend)
    i = 1
    while int(digits[:i]) < d:  # the first partial: the shortest prefix the divisor goes into
        i += 1
    partial, quotient = int(digits[:i]), ""
    k = len(str(d)) - 1
    lead = d // 10**k
    while True:
        base = {"kind": "division", "partial": partial, "divisor": d, "dividend": dividend}
        if partial < d:
            g = 0  # no guess: a person sees the divisor does not go in
        else:
            lo, hi = 1, 9
            g = min(9, (partial // 10**k) // lead) if config.heuristic == "estimate" else None
            while True:
                if g is None or not lo <= g <= hi:
                    if config.heuristic == "bisect":
                        g = (lo + hi) // 2
                    elif config.heuristic == "random":
                        g = _middle_half(lo, hi, rng)
                    else:  # scan counts down; estimate, never too small, also just steps down
                        g = hi
                product = g * d
                if product <= partial and partial - product < d:
                    break
                status = "over" if product > partial else "under"
                step({**base, "digit": g, "product": product, "remainder": partial - product,
                      "status": status, "final": False})
                rec.backtrack({"kind": "division", "partial": partial, "divisor": d})
                lo, hi = (lo, g - 1) if status == "over" else (g + 1, hi)
                g = None
        quotient += str(g)
        rem = partial - g * d
        data = {**base, "digit": g, "product": g * d, "remainder": rem,
                "status": "zero" if partial < d else "fits", "final": i == len(digits)}
        if i == len(digits):
            data["quotient"] = int(quotient)
            step(data)
            rec.answer(int(quotient))
            return
        partial = rem * 10 + int(digits[i])
        data.update(brought=int(digits[i]), next_partial=partial)
        step(data)
        i += 1


def _guess_x(puzzle: dict, config: Config, rng: random.Random, rec: Recorder, step) -> None:
    coeffs, c, _, _ = _parse_equation(puzzle["kind"], puzzle["equation"])
    lead = next(coeffs[p] for p in (2, 1) if coeffs[p])
    f = lambda v: v - c  # noqa: E731  (left - right; its sign tells too big from too small)
    lo, hi = 0, None  # the root lies strictly between lo and hi (None: no bound yet)
    # (x, left - right) of the tries so far. For a linear equation x = 0 is read off the
    # equation (the constant), so the first correction is already exact; a quadratic's
    # first estimate is close, so the first correction is one step toward the root.
    points = [(0, f(coeffs[0]))] if puzzle["kind"] == "linear" else []
    h = config.heuristic
    g = None
    if h == "estimate":
        if puzzle["kind"] == "linear":  # ignore the constant: 3x + 7 = 25 -> 25 / 3 -> 8
            g = round(Fraction(c, coeffs[1]))
        else:  # complete the square roughly: 2x^2 - 22x - 624 -> sqrt(624 / 2) + 22 / 4 -> 23
            g = round(math.sqrt(abs(c - coeffs[0]) / abs(coeffs[2])) - coeffs[1] / (2 * coeffs[2]))
        g = max(1, g)
    elif h == "scan":
        g = config.scan_stride
    while True:
        if g is None or g <= lo or (hi is not None and g >= hi):
            g = _next_x(h, lo, hi, points, config.scan_stride, rng)
        value, parts = _evaluate(coeffs, g)
        data = {"kind": puzzle["kind"], "x": g, "value": value, "c": c, "parts": parts,
                "final": value == c}
        if value == c:
            if h == "bisect" and lo >= 1 and hi is not None:
                data["bracket"] = [lo, hi]  # the kept line says where bisection had got to
            step(data)
            rec.answer(g)
            return
        too_big = (f(value) > 0) == (lead > 0)
        step({**data, "too_big": too_big})
        lo, hi = (lo, g) if too_big else (g, hi)
        rec.backtrack({"kind": puzzle["kind"], "lo": lo, "hi": hi})
        points.append((g, f(value)))
        g = None


def _middle_half(lo: int, hi: int, rng: random.Random) -> int:
    """A random integer from the middle half of [lo, hi]: random, but every wrong try cuts
    at least a quarter of what is left, so a random search stays within about twice
    bisection's length (uniform over the whole range made 1.5% of quadratic traces exceed
    2048 characters, measured on 400)."""
    quarter = (hi - lo) // 4
    return rng.randint(lo + quarter, hi - quarter)


def _next_x(h: str, lo: int, hi: int | None, points: list, stride: int, rng: random.Random) -> int:
    """The next x strictly inside (lo, hi); the root is an integer there, so one exists."""
    if h == "scan":
        return (lo // stride + 1) * stride if hi is None else lo + 1
    if h == "estimate" and len(points) == 1:  # one step from the first estimate
        return lo + 1 if points[0][0] == lo else hi - 1
    if h == "estimate":  # the secant through the last two tries, if it lands inside
        (x1, f1), (x2, f2) = points[-2:]
        if f1 != f2:
            g = math.floor(x2 - Fraction(f2 * (x2 - x1), f2 - f1) + Fraction(1, 2))
            if g > lo and (hi is None or g < hi):
                return g
    if hi is None:  # double until too big; from 2, as 1 is rarely the answer and 2 brackets it
        return 2 if lo == 0 else 2 * lo
    if h == "random":
        return _middle_half(lo + 1, hi - 1, rng)
    return (lo + hi) // 2


# ----------------------------------------------------------------------------- words

# First phrase of each list: the plain wording (paraphraser=none).
OVER_PHRASES = (
    "{head}: try {g}. {mul}, more than {P}.\n",
    "How many {d}s in {P}? Maybe {g}: {mul}, too much.\n",
    "{head}: {g}? {mul} is more than {P}.\n",
    "Try {g} for {head}: {mul}, over {P}.\n",
    "{head}, say {g}: {mul}, that's more than {P}.\n",
)
UNDER_PHRASES = (
    "{head}: try {g}. {mul}, {sub}, still {d} or more.\n",
    "How many {d}s in {P}? Maybe {g}: {mul}, {sub}, but that is not less than {d}.\n",
    "{head}: {g}? {mul}, {sub}, too much left over.\n",
    "Try {g} for {head}: {mul}, {sub}; {d} still fits.\n",
)
FITS_PHRASES = (
    "{head}: try {g}. {mul}, {sub}.{bring}\n",
    "How many {d}s in {P}? {g}: {mul}, {sub}.{bring}\n",
    "{head}: {g}. {mul}, {sub}.{bring}\n",
    "Try {g} for {head}: {mul}, {sub}, less than {d}.{bring}\n",
    "{head} gives {g}: {mul}, {sub}.{bring}\n",
)
ZERO_PHRASES = (
    "{head}: {P} is less than {d}, so 0.{bring}\n",
    "{d} does not go into {P}: write 0.{bring}\n",
    "{P} is smaller than {d}, so the digit is 0.{bring}\n",
    "No {d} fits in {P}, so 0.{bring}\n",
)
WRONG_X_PHRASES = (
    "Try x = {g}: {calc}, not {c}, too {dir}.\n",
    "What about x = {g}? {calc}. Not {c}; too {dir}.\n",
    "Check x = {g}: {calc}, not {c}. Too {dir}.\n",
    "Maybe x = {g}: {calc}. No, too {dir}.\n",
    "x = {g}? {calc}, so {g} is too {dir}.\n",
)
RIGHT_X_PHRASES = (
    "{between}Try x = {g}: {calc}. It works.\n",
    "{between}What about x = {g}? {calc}. Yes, that is {c}.\n",
    "{between}Check x = {g}: {calc}. That's it.\n",
    "{between}Maybe x = {g}: {calc}. It works!\n",
    "{between}x = {g}? {calc}. Exactly {c}.\n",
)
BACK_PHRASES = (
    "Wrong guess. Back to {where}.\n",
    "That fails; back to {where}.\n",
    "No. Back to {where}.\n",
    "Scratch that, back to {where}.\n",
)
NOTE_PHRASES = (
    "({guess} was too {dir}: {why}.)\n",
    "(Not {guess}: {why}.)\n",
    "({guess} doesn't work, {why}.)\n",
    "(So not {guess}: {why}.)\n",
)


def step_phrases(data: dict) -> tuple[str, ...]:
    if data["kind"] != "division":
        return RIGHT_X_PHRASES if data["final"] else WRONG_X_PHRASES
    return {"over": OVER_PHRASES, "under": UNDER_PHRASES, "fits": FITS_PHRASES,
            "zero": ZERO_PHRASES}[data["status"]]


def step_slots(data: dict) -> dict:
    if data["kind"] != "division":
        bracket = data.get("bracket")
        return {"g": data["x"], "c": data["c"], "dir": "big" if data.get("too_big") else "small",
                "calc": ", ".join(data["parts"]) if data["parts"] else f"the left side is {data['value']}",
                "between": f"x is between {bracket[0]} and {bracket[1]}. " if bracket else ""}
    P, d, g = data["partial"], data["divisor"], data["digit"]
    if data["final"]:  # the last line says the whole result, a true equation kept on the page
        bring = f" So {data['dividend']} ÷ {d} = {data['quotient']}."
    else:
        bring = f" Bring down {data['brought']}: {data['next_partial']}." if "brought" in data else ""
    return {"head": f"{P} ÷ {d}", "P": P, "d": d, "g": g, "mul": f"{g} × {d} = {data['product']}",
            "sub": f"{P} - {data['product']} = {data['remainder']}", "bring": bring}


def back_slots(state: dict) -> dict:
    if state["kind"] == "division":
        return {"where": f"{state['partial']} ÷ {state['divisor']}"}
    lo, hi = state["lo"], state["hi"]
    if hi is None:
        return {"where": f"x more than {lo}"}
    return {"where": f"x between {lo} and {hi}" if lo >= 1 else f"x less than {hi}"}


def note_slots(data: dict, state: dict) -> dict:
    """A kept note about the guess that was erased: "(3 was too big: 3 × 29 = 87 is more
    than 74.)", "(x = 4 was too small: it gives -7, not 0.)"."""
    if data["kind"] != "division":
        return {"guess": f"x = {data['x']}", "dir": "big" if data.get("too_big") else "small",
                "why": f"it gives {data['value']}, not {data['c']}"}
    s = step_slots(data)
    if data["status"] == "over":
        return {"guess": str(data["digit"]), "dir": "big", "why": f"{s['mul']} is more than {data['partial']}"}
    return {"guess": str(data["digit"]), "dir": "small",
            "why": f"{s['sub']} is still {data['divisor']} or more"}


# ----------------------------------------------------------------------------- verifier

MAX_ANSWER_CHARS = 64
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only: \d would take "２５８"


def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` (an int, or the text after "Answer: ") is the puzzle's answer.

    The text must be a plain integer: "258" and " 258 " pass, "258.0", "2*129" and
    "x = 258" do not. Equations are checked by substituting into the parsed left side (exact
    integers) and the answer must be positive.

    >>> p = {"kind": "division", "dividend": 7482, "divisor": 29}
    >>> verify(p, 258), verify(p, " 258 "), verify(p, "258.0"), verify(p, 257)
    (True, True, False, False)
    >>> q = {"kind": "quadratic", "equation": "x**2 - 2*x - 15 = 0"}
    >>> verify(q, "5"), verify(q, "-3")
    (True, False)
    """
    if isinstance(answer, bool):
        return False
    if isinstance(answer, str):
        if len(answer) > MAX_ANSWER_CHARS or not _INTEGER.fullmatch(answer.strip()):
            return False
        answer = int(answer.strip())
    if not isinstance(answer, int):
        return False
    try:
        if puzzle["kind"] == "division":
            divisor, dividend = puzzle["divisor"], puzzle["dividend"]
            return type(divisor) is int and divisor > 0 and type(dividend) is int and answer * divisor == dividend
        coeffs, c, _, _ = _parse_equation(puzzle["kind"], puzzle["equation"])
        return answer >= 1 and coeffs[2] * answer * answer + coeffs[1] * answer + coeffs[0] == c
    except Exception:  # a broken puzzle: no answer is right
        return False
