"""Checks written apart from the project's own trace and verifier code, for
``python -m train.rejudge``: they apply the backspaces and ``<backtrack>`` markers again and
do their own exact arithmetic, so a re-judged accuracy shares no code with the one it checks.
A task declares its checker as ``CHECKER`` (solvers/task.py).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction


def apply_erasures(text: str) -> str | None:
    out: list[str] = []
    for piece in re.split(r"(<backtrack>)", text):
        if piece == "<backtrack>":
            if not out or out[-1] != "\n":
                return None
            out.pop()
            while out and out[-1] != "\n":
                out.pop()
            continue
        for ch in piece:
            if ch == "\b":
                if not out:
                    return None
                out.pop()
            else:
                out.append(ch)
    return "".join(out)


def _value(node, used):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp):
        a, b = _value(node.left, used), _value(node.right, used)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.Div: lambda: a / b}
        if type(node.op) in ops:
            return ops[type(node.op)]()
    raise ValueError


def answer_text(text: str, fmt: str = "plain") -> str | None:
    """The part of a completion its answer is read from, outcome markers dropped: all of it,
    or for ``data.format=r1`` what follows the first ``</think>`` (None without one, or when
    the text before it erases more than it holds)."""
    text = text.replace("<success>", "").replace("<failure>", "")
    if fmt != "r1":
        return text
    head, tag, tail = text.partition("</think>")
    if not tag or any(apply_erasures(part) is None for part in head.split("<think>", 1)):
        return None
    return tail


def countdown_correct(puzzle: dict, text: str, fmt: str = "plain") -> bool:
    text = answer_text(text, fmt)
    page = apply_erasures(text) if text is not None else None
    if page is None:
        return False
    answers = [line[len("Answer:"):].strip() for line in page.split("\n") if line.startswith("Answer:")]
    if not answers or len(answers[-1]) > 256:
        return False
    try:
        used: list[int] = []
        value = _value(ast.parse(answers[-1].replace("×", "*").replace("÷", "/").replace("−", "-"),
                                 mode="eval").body, used)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return False
    return value == puzzle["target"] and Counter(used) == Counter(puzzle["numbers"])
