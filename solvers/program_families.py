"""task=program's question families: each family's sampler, question, reference solution and
the programs the solver writes; a puzzle's key and the verifier that checks an answer against
the reference solution."""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

FAMILIES = ("multiples", "prime", "digits", "binomial", "lattice")


@dataclass(frozen=True)
class Family:
    bounds: dict            # parameter -> (lo, hi) accepted by parse_puzzle
    sample: Callable        # (config, rng) -> params
    small: Callable         # (params, rng) -> params of a small case (explore)
    question: Callable      # params -> str
    what: Callable          # params -> what the answer is, for the summary
    case: Callable          # params -> a short name of the instance, for think lines
    plans: tuple            # think-line phrasings of the plan, formatted with the params
    answer: Callable        # params -> int: the reference solution
    program: Callable       # params -> code lines; the parameters are set in the first lines
    wrong_lines: tuple      # (index, wrong text, why): lines that may be typed wrong and erased
    off_by_one: Optional[tuple] = None  # (index, wrong text, why) or None
    off_by_one_shows: Callable = lambda p: True  # params -> does the off-by-one change what is printed?


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _multiples_answer(a: int, b: int, limit: int) -> int:
    # inclusion-exclusion: k (1 + 2 + ... + m) for m = (limit - 1) // k
    def s(k: int) -> int:
        m = (limit - 1) // k
        return k * m * (m + 1) // 2
    return s(a) + s(b) - s(_lcm(a, b))


def _largest_prime_factor(n: int) -> int:
    largest, p = 1, 2
    while p * p <= n:
        while n % p == 0:
            largest, n = p, n // p
        p += 1 if p == 2 else 2
    return max(largest, n) if n > 1 else largest


def _binomial_count(rows: int, threshold: int) -> int:
    count, row = 0, [1]
    for _ in range(rows):
        row = [1] + [x + y for x, y in zip(row, row[1:])] + [1]
        count += sum(c > threshold for c in row)
    return count


def _pair(rng: random.Random) -> tuple[int, int]:
    while True:
        a, b = sorted(rng.sample(range(2, 10), 2))
        if b % a:
            return a, b


FAMILY = {
    "multiples": Family(
        bounds={"a": (2, 100), "b": (2, 100), "limit": (2, 10**6)},
        sample=lambda c, rng: dict(zip("ab", _pair(rng)), limit=rng.randint(10, c.limit_max)),
        small=lambda p, rng: {**p, "limit": rng.randint(10, 30)},
        question=lambda p: (f"What is the sum of all the natural numbers below {p['limit']} "
                            f"that are multiples of {p['a']} or {p['b']}?"),
        what=lambda p: f"sum of the multiples of {p['a']} or {p['b']} below {p['limit']}",
        case=lambda p: f"the limit {p['limit']}",
        plans=("Loop over every n below {limit} and add it when {a} or {b} divides it.",
               "A short loop will do: sum the n below {limit} that are multiples of {a} or {b}.",
               "Let a program add up the multiples of {a} or {b} below {limit}.",
               "Brute force is cheap here: test each n below {limit} for {a} or {b} dividing it."),
        answer=lambda p: _multiples_answer(p["a"], p["b"], p["limit"]),
        program=lambda p: [f"a, b = {p['a']}, {p['b']}", f"limit = {p['limit']}", "total = 0",
                           "for n in range(1, limit):", "    if n % a == 0 or n % b == 0:",
                           "        total += n", "print(total)"],
        wrong_lines=((3, "for n in range(1, limit + 1):", "the limit itself is not below the limit"),
                     (4, "    if n % a == 0 and n % b == 0:", "a multiple of either counts, so or, not and")),
        off_by_one=(3, "for n in range(1, limit + 1):", "range(1, limit + 1) counts the limit too, "
                    "but only numbers below it count"),
        off_by_one_shows=lambda p: p["limit"] % p["a"] == 0 or p["limit"] % p["b"] == 0,
    ),
    "prime": Family(
        bounds={"n": (2, 10**9)},
        sample=lambda c, rng: {"n": rng.randint(100, c.factor_max)},
        small=lambda p, rng: {"n": rng.choice([60, 84, 90, 126, 150, 195, 231, 330, 462])},
        question=lambda p: f"What is the largest prime factor of {p['n']}?",
        what=lambda p: f"largest prime factor of {p['n']}",
        case=lambda p: f"the number {p['n']}",
        plans=("Divide out factors from 2 upward; what is left at the end is the largest prime factor.",
               "Trial division: strip each factor while it divides, and remember the last one.",
               "A program can factor {n} by trial division and keep the largest factor.",
               "Factor {n} by dividing out small factors; the last one standing is the answer."),
        answer=lambda p: _largest_prime_factor(p["n"]),
        program=lambda p: [f"n = {p['n']}", "factor = 2", "largest = 1", "while factor * factor <= n:",
                           "    while n % factor == 0:", "        largest = factor", "        n //= factor",
                           "    factor += 1", "if n > 1:", "    largest = n", "print(largest)"],
        wrong_lines=((4, "    if n % factor == 0:", "a factor can divide more than once, so while, not if"),
                     (1, "factor = 1", "1 divides everything; start at 2")),
    ),
    "digits": Family(
        bounds={"base": (2, 99), "exp": (1, 1000)},
        sample=lambda c, rng: {"base": rng.randint(2, 9), "exp": rng.randint(10, c.power_max)},
        small=lambda p, rng: {**p, "exp": rng.randint(2, 5)},
        question=lambda p: f"What is the sum of the digits of {p['base']}^{p['exp']}?",
        what=lambda p: f"sum of the digits of {p['base']}^{p['exp']}",
        case=lambda p: f"{p['base']}^{p['exp']}",
        plans=("Python's integers are exact: compute {base}^{exp} and add its digits.",
               "Turn {base}^{exp} into a string and sum its digits.",
               "Let the program compute {base}^{exp} exactly, then add up the digits.",
               "Big integers are no problem in Python: sum the digits of {base}^{exp}."),
        answer=lambda p: sum(map(int, str(p["base"] ** p["exp"]))),
        program=lambda p: [f"value = {p['base']} ** {p['exp']}", "total = 0", "for digit in str(value):",
                           "    total += int(digit)", "print(total)"],
        wrong_lines=((2, "for digit in value:", "an integer cannot be looped over; go through str(value)"),
                     (3, "    total += digit", "a digit is a character; it needs int()")),
    ),
    "binomial": Family(
        bounds={"rows": (1, 200), "threshold": (0, 10**12)},
        sample=lambda c, rng: {"rows": rng.randint(10, c.rows_max),
                               "threshold": 10 ** rng.randint(2, 6)},
        small=lambda p, rng: {"rows": rng.randint(5, 7), "threshold": 10},
        question=lambda p: (f"How many of the binomial coefficients C(n, r) with 1 <= n <= {p['rows']} "
                            f"and 0 <= r <= n are greater than {p['threshold']}?"),
        what=lambda p: f"count of C(n, r) above {p['threshold']} for n up to {p['rows']}",
        case=lambda p: f"rows up to {p['rows']} and the threshold {p['threshold']}",
        plans=("math.comb gives each C(n, r); count those above {threshold} for n up to {rows}.",
               "Loop over n up to {rows} and every r, and count the C(n, r) greater than {threshold}.",
               "Only about {rows} rows: a double loop with math.comb is enough.",
               "Count the entries of Pascal's triangle above {threshold}, rows 1 to {rows}."),
        answer=lambda p: _binomial_count(p["rows"], p["threshold"]),
        program=lambda p: ["from math import comb", f"rows = {p['rows']}", f"threshold = {p['threshold']}",
                           "count = 0", "for n in range(1, rows + 1):", "    for r in range(n + 1):",
                           "        if comb(n, r) > threshold:", "            count += 1", "print(count)"],
        wrong_lines=((6, "        if comb(n, r) >= threshold:", "greater than, not greater or equal"),
                     (4, "for n in range(1, rows):", "range(1, rows) leaves out the last row")),
        off_by_one=(4, "for n in range(1, rows):", "range(1, rows) stops before the last row"),
        off_by_one_shows=lambda p: _binomial_count(p["rows"], p["threshold"]) != _binomial_count(
            p["rows"] - 1, p["threshold"]),
    ),
    "lattice": Family(
        bounds={"width": (1, 30), "height": (1, 30)},
        sample=lambda c, rng: {"width": rng.randint(2, c.grid_max), "height": rng.randint(2, c.grid_max)},
        small=lambda p, rng: {"width": rng.randint(2, 3), "height": 2},
        question=lambda p: (f"How many paths lead from the top left to the bottom right corner of a "
                            f"{p['width']} by {p['height']} grid, moving only right or down along the "
                            f"grid lines?"),
        what=lambda p: f"number of paths through a {p['width']} by {p['height']} grid",
        case=lambda p: f"a {p['width']} by {p['height']} grid",
        plans=("Count paths to each grid point: the paths from above plus the paths from the left.",
               "Dynamic programming over the grid points, each the sum of its upper and left neighbours.",
               "Fill a table of path counts for the {width} by {height} grid, row by row.",
               "Every point is reached from above or from the left; add the two counts."),
        answer=lambda p: math.comb(p["width"] + p["height"], p["width"]),
        program=lambda p: [f"width, height = {p['width']}, {p['height']}",
                           "paths = [[1] * (width + 1) for _ in range(height + 1)]",
                           "for i in range(1, height + 1):", "    for j in range(1, width + 1):",
                           "        paths[i][j] = paths[i - 1][j] + paths[i][j - 1]",
                           "print(paths[height][width])"],
        wrong_lines=((4, "        paths[i][j] = paths[i - 1][j] * paths[i][j - 1]",
                      "paths from two sides add up; they do not multiply"),),
        off_by_one=(1, "paths = [[1] * width for _ in range(height + 1)]",
                    "a row has width + 1 grid points, not width"),
    ),
}


def puzzle_key(puzzle: dict) -> str:
    """``family:key=value,...`` in a fixed order: a puzzle's whole content."""
    params = ",".join(f"{k}={puzzle[k]}" for k in FAMILY[puzzle["family"]].bounds)
    return f"{puzzle['family']}:{params}"


@functools.lru_cache(maxsize=65536)
def _reference(key: str) -> int:
    family, params = key.split(":")
    p = {k: int(v) for k, v in (kv.split("=") for kv in params.split(","))}
    return FAMILY[family].answer(p)


def reference_answer(puzzle: dict) -> int:
    """The family's reference solution (cached: verify runs once per graded completion)."""
    return _reference(puzzle_key(puzzle))


MAX_ANSWER_CHARS = 64
_INT = re.compile(r"-?\d+")


def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` (an int, or its text) is the reference answer. Strict: "233168"
    and 233168 pass, "233168.0", "2.3e5" and True do not. Never raises.

    >>> p = {"family": "multiples", "a": 3, "b": 5, "limit": 10}
    >>> verify(p, 23), verify(p, " 23 "), verify(p, "23.0"), verify(p, 22), verify(p, True), verify(p, None)
    (True, True, False, False, False, False)
    """
    try:
        if isinstance(answer, str):
            text = answer.strip()
            if len(text) > MAX_ANSWER_CHARS or not _INT.fullmatch(text):
                return False
            answer = int(text)
        if type(answer) is not int:
            return False
        return answer == reference_answer(puzzle)
    except (KeyError, ValueError, TypeError, AttributeError):
        return False
