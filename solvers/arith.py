"""Arithmetic on the page, checked: the equation readers the validator, the LLM
paraphraser's fidelity check and the ``llm_search`` checker share, written once.

Two readings of a text, on purpose:

- ``false_equations`` reads ``a op b = c`` (one binary operation, integers) the way the
  record validator does: "7 * 3 = 21, 12 + 21 = 33" is two true equations, and
  "12 + 7 * 3 = 33" is read as "7 * 3 = 33", false. Traces write one operation per equation.
- ``equations`` + ``true_equation`` read any "<arithmetic> = <integer>" and do it exactly
  with sympy, so "(12 + 7) * 3 = 57" is true and "7 / 2 = 3" is false.

A text passes ``check_arithmetic`` only when both readings find nothing false: what passes
here can stay on a page the validator accepts.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Optional

# "12 + 7 = 19" or "-4 + 3 = -1": an integer (the first may be negative), one operator,
# an integer, an equals sign, an integer. A negative right operand is written in
# parentheses: "5 - (-3) = 8".
EQUATION = re.compile(r"(?<![\w.])(-?\d+) ?([-+*/×÷]) ?(\d+|\(-\d+\)) ?= ?(-?\d+)(?!\w|\.\d)")

# "<arithmetic> = <number>": the left side is digits, operators, parentheses and spaces.
_ANY_EQUATION = re.compile(r"((?:[-+*/×÷()\s]*\d+)(?:\s*[-+*/×÷]\s*[-(\s]*\d+\)*)+)\s*=\s*(-?\d+)")


def false_equations(text: str) -> list[str]:
    """The binary equations in ``text`` whose arithmetic is wrong (the validator's reading).

    >>> false_equations("25 - 8 = 17. Left: 3, 17. 17 * 3 = 52. 9 / 2 = 4")
    ['17 * 3 = 52', '9 / 2 = 4']
    >>> false_equations("-1 - 15 = -16, 5 - (-3) = 8, 7 × 3 = 20")
    ['7 × 3 = 20']
    """
    wrong = []
    for m in EQUATION.finditer(text):
        a, op, b, c = int(m[1]), m[2], int(m[3].strip("()")), int(m[4])
        if op == "+":
            ok = a + b == c
        elif op == "-":
            ok = a - b == c
        elif op in "*×":
            ok = a * b == c
        else:
            ok = b != 0 and Fraction(a, b) == c
        if not ok:
            wrong.append(m[0])
    return wrong


def equations(text: str) -> set[str]:
    """The equations a text states, spaces and the multiplication sign normalised.

    >>> sorted(equations("Try 25 - 8 = 17, then (17 × 3) = 51. Left: 51."))
    ['(17*3)=51', '25-8=17']
    """
    return {_norm(m.group(1)) + "=" + m.group(2) for m in _ANY_EQUATION.finditer(text)}


def _norm(expr: str) -> str:
    return re.sub(r"\s+", "", expr).replace("×", "*").replace("÷", "/").strip("+")


@lru_cache(maxsize=65536)
def true_equation(equation: str) -> bool:
    """Exact arithmetic with sympy; never evaluates anything but numbers and + - * / ( ).

    >>> true_equation("(17*3)=51"), true_equation("7/2=3")
    (True, False)
    """
    left, right = equation.rsplit("=", 1)
    value = exact_value(left)
    return value is not None and value == int(right)


def exact_value(expr: str):
    """The exact (rational) value of integers joined by + - * / (or × ÷) and parentheses, or
    None for anything else, a division by zero, or more than 200 characters. Powers are
    refused: ``2**9**9`` would take sympy minutes.

    >>> exact_value("12 + 7 × 3"), exact_value("7 / 2"), exact_value("1 / 0"), exact_value("2**3")
    (33, 7/2, None, None)
    """
    import sympy
    if len(expr) > 200:
        return None
    expr = re.sub(r"\s+", "", expr).replace("×", "*").replace("÷", "/")
    if not re.fullmatch(r"[-+*/()\d]+", expr) or "**" in expr:
        return None
    try:
        value = sympy.sympify(expr, rational=True, evaluate=True)
    except (sympy.SympifyError, SyntaxError, TypeError, ZeroDivisionError):
        return None
    return value if value.is_Rational else None


def check_arithmetic(text: str) -> tuple[Optional[str], int]:
    """(the first false equation in ``text`` or None, how many equations it states).

    >>> check_arithmetic("7 * 3 = 21, 12 + 21 = 33")
    (None, 2)
    >>> check_arithmetic("12 + 7 * 3 = 33")   # sympy agrees, but the page would read 7 * 3 = 33
    ('7 * 3 = 33', 1)
    >>> check_arithmetic("(12 + 7) * 3 = 56")
    ('(12+7)*3=56', 1)
    >>> check_arithmetic("No numbers here.")
    (None, 0)
    """
    wrong = false_equations(text)
    if wrong:
        return wrong[0], len(equations(text)) or 1
    found = equations(text)
    for eq in sorted(found):
        if not true_equation(eq):
            return eq, len(found)
    return None, len(found)
