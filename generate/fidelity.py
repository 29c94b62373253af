"""Does a paraphrased step still say what the step said?

LLMs drop numbers, invent equations and do arithmetic of their own. A rewrite of a step
passes only when

- it is still one line (ends with one newline, holds no other) with no erasing characters
  (``paraphrase_structure``);
- every number of the original is still there, as often (``paraphrase_lost_number``), and
  no number the original does not have was added (``paraphrase_new_number``);
- it states no equation the original did not (``paraphrase_new_equation``);
- every equation it states is true, checked with sympy (``paraphrase_false_arithmetic``;
  the readers live in ``solvers.arith``, shared with the ``llm_search`` checker).

A reason comes back as ``"<reason>: <detail>"``; the part before the colon is what the
manifest counts. The answer line is never paraphrased and the validator still checks the
whole record (answer, length budget) afterwards.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional

from solvers.arith import equations, true_equation  # noqa: F401  (written once, shared with solvers)
from solvers.trace import BACKSPACE, BACKTRACK_TOKEN

REASONS = ("paraphrase_structure", "paraphrase_lost_number", "paraphrase_new_number", "paraphrase_new_equation",
           "paraphrase_false_arithmetic", "paraphrase_malformed", "paraphrase_failed")

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")


def check(original: str, rewritten: str) -> Optional[str]:
    """The reason ``rewritten`` is not a faithful paraphrase of ``original``, or None.

    >>> check("25 - 8 = 17. Left: 3, 17.\\n", "Let me try 25 - 8 = 17, so 3 and 17 remain.\\n") is None
    True
    >>> check("25 - 8 = 17. Left: 3, 17.\\n", "Let me try 25 - 8 = 18, so 3 and 18 remain.\\n")
    'paraphrase_lost_number: 17 lost'
    >>> check("25 - 8 = 17. Left: 3, 17.\\n", "25 - 8 = 17, and 17 + 3 = 20. Left: 3, 17.\\n")
    'paraphrase_new_number: 20 added'
    """
    if (not rewritten.endswith("\n") or rewritten.count("\n") != 1 or BACKSPACE in rewritten
            or BACKTRACK_TOKEN in rewritten or not rewritten.strip()):
        return "paraphrase_structure: a step is one non-empty line ending in a newline, with no erasing characters"
    before, after = _plain_numbers(original), _plain_numbers(rewritten)
    lost = before - after
    if lost:
        return f"paraphrase_lost_number: {', '.join(sorted(lost))} lost"
    added = set(after) - set(before)  # a number said twice is not a new number
    if added:
        return f"paraphrase_new_number: {', '.join(sorted(added))} added"
    new = equations(rewritten) - equations(original)
    for eq in sorted(new):
        if not true_equation(eq):
            return f"paraphrase_false_arithmetic: {eq} is false"
    originals = {_canonical(e) for e in equations(original)}
    for eq in sorted(new):
        if _canonical(eq) not in originals:
            return f"paraphrase_new_equation: {eq} is not in the step"
    return None


def _plain_numbers(text: str) -> Counter:
    """The numbers a text writes, as a multiset, signs dropped (a paraphrase may say "minus").

    >>> sorted(_plain_numbers("25 - 8 = 17, left: 3, 17, -4.").elements())
    ['17', '17', '25', '3', '4', '8']
    """
    return Counter(m.group(0).lstrip("-") for m in _NUMBER.finditer(text))


def _canonical(eq: str) -> str:
    """One spelling per equation: outer parentheses dropped, the operands of a single + or *
    sorted ("(8 + 25) = 33" and "25 + 8 = 33" are the same equation; "25 - 17 = 8" is not
    "25 - 8 = 17").

    >>> _canonical("(8+25)=33") == _canonical("25+8=33"), _canonical("25-17=8") == _canonical("25-8=17")
    (True, False)
    """
    left, right = eq.rsplit("=", 1)
    while left.startswith("(") and left.endswith(")") and left.count("(") == 1:
        left = left[1:-1]
    m = re.fullmatch(r"(-?\d+)([+*])(-?\d+)", left)
    if m:
        a, b = sorted([m[1], m[3]])
        left = f"{a}{m[2]}{b}"
    return f"{left}={right}"
