"""Independent re-checks of a record, from its text alone.

The validator does not trust the solver: it collapses the Reasoning, reads the answer line,
re-does the arithmetic of every equation left on the page and verifies the answer with the
task's verifier. Every rejection has a named reason, counted in the manifest:

=====================  =====================================================================
reason                 meaning
=====================  =====================================================================
schema                 a field is missing or has the wrong type
malformed_backspaces   a backspace or marker erases more than was written
missing_answer_line    the collapsed Reasoning does not end with an ``Answer: ...`` line
answer_mismatch        the answer line says something other than the record's Answer
wrong_answer           the Answer does not solve the puzzle
false_equation         an equation left in the kept text is false
over_length            the Reasoning is longer than the length budget (``max_chars``)
split_leak             the puzzle belongs to another split by its content
duplicate              the puzzle already appeared earlier in the split (found when writing)
no_puzzle              the sampler found no puzzle the solver could solve for this item
unsolved               a given puzzle (``problems=FILE``) was not solved within the budget
contaminated           the puzzle or question is in the ``decontaminate=FILE`` list
unconvertible          an imported search (``traces=FILE on_bad_trace=skip``) could not be converted
=====================  =====================================================================
"""

from __future__ import annotations

import re
from fractions import Fraction
from types import ModuleType
from typing import Callable, Optional

from solvers.trace import ANSWER_PREFIX, MalformedTrace, collapse

REASONS = ("schema", "malformed_backspaces", "missing_answer_line", "answer_mismatch",
           "wrong_answer", "false_equation", "over_length", "split_leak", "duplicate",
           "no_puzzle", "unsolved", "contaminated", "unconvertible")

# "12 + 7 = 19" or "-4 + 3 = -1": an integer (the first may be negative), one operator,
# an integer, an equals sign, an integer. A negative right operand is written in
# parentheses: "5 - (-3) = 8".
EQUATION = re.compile(r"(?<![\w.])(-?\d+) ?([-+*/×÷]) ?(\d+|\(-\d+\)) ?= ?(-?\d+)(?!\w|\.\d)")
_FIELDS = {"Question": str, "Reasoning": str}


def false_equations(text: str) -> list[str]:
    """The equations in ``text`` whose arithmetic is wrong.

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


def check(record: dict, task: ModuleType, max_chars: int,
          split_of: Optional[Callable[[dict], str]] = None) -> Optional[str]:
    """The reason ``record`` is rejected, or None when it passes.

    ``split_of(puzzle)`` gives the split a puzzle belongs to by content; None skips the
    leak check (given problems go wherever the user puts them).
    """
    for name, kind in _FIELDS.items():
        if not isinstance(record.get(name), kind):
            return "schema"
    if "Answer" not in record or isinstance(record["Answer"], bool) or not isinstance(record["Answer"], (int, str)):
        return "schema"
    reasoning = record["Reasoning"]
    try:
        page = collapse(reasoning)
    except MalformedTrace:
        return "malformed_backspaces"
    last = page.rsplit("\n", 1)[-1]
    if not last.startswith(ANSWER_PREFIX):
        return "missing_answer_line"
    if last[len(ANSWER_PREFIX):].strip() != str(record["Answer"]):
        return "answer_mismatch"
    puzzle = record.get("puzzle")
    if puzzle is not None and not task.verify(puzzle, record["Answer"]):
        return "wrong_answer"
    if false_equations(page):
        return "false_equation"
    if len(reasoning) > max_chars:
        return "over_length"
    if split_of is not None and puzzle is not None and split_of(puzzle) != record.get("split"):
        return "split_leak"
    return None
