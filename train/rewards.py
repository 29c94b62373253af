"""Reward functions in TRL's signature: ``f(completions, **columns) -> list[float]``.

Each grades a completion with the same verifier the generator used (one verifier per task,
written once, in ``solvers``). The dataset columns ``puzzle`` (JSON text or a dict) and
``task`` reach them as keyword arguments, one value per completion.
"""

from __future__ import annotations

import json

from solvers import verifier
from solvers.trace import ANSWER_PREFIX, MalformedTrace, collapse, final_answer


def _puzzle(p):
    return json.loads(p) if isinstance(p, str) else p


def judge(completion: str, puzzle, task: str) -> dict:
    """Everything evaluation records about one completion.

    >>> judge("1 + 2 = 3\\n\\b\\bAnswer: 1 + 2", {"numbers": [1, 2], "target": 3}, "countdown")["correct"]
    False
    >>> judge("1 + 2 = 3\\nAnswer: 1 + 2", {"numbers": [1, 2], "target": 3}, "countdown")["correct"]
    True
    """
    try:
        page = collapse(completion)
        malformed = False
    except MalformedTrace:
        page, malformed = None, True
    answer = final_answer(page) if page is not None else None
    correct = answer is not None and bool(verifier(task)(_puzzle(puzzle), answer))
    return {"collapsed": page, "answer": answer, "correct": correct, "malformed": malformed}


def correctness(completions, puzzle, task, **kwargs) -> list[float]:
    """1.0 when the completion, backspaces applied, ends its reasoning with an ``Answer:``
    line that solves the puzzle; 0.0 otherwise, and for a malformed stream.

    >>> p = '{"numbers": [2, 3, 4], "target": 20}'
    >>> correctness(["2 + 3 = 5\\n5 * 4 = 20\\nAnswer: (2 + 3) * 4",   # right
    ...              "2 * 3 = 6\\nAnswer: 2 * 3 * 4",                    # wrong value
    ...              "\\b\\bAnswer: (2 + 3) * 4"],                       # erases nothing: malformed
    ...             puzzle=[p] * 3, task=["countdown"] * 3)
    [1.0, 0.0, 0.0]
    """
    return [float(judge(c, p, t)["correct"]) for c, p, t in zip(completions, puzzle, task)]


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 when every backspace has something to erase and the collapsed text's last line
    is an ``Answer:`` line; else 0.0.

    >>> format_reward(["x\\b1 + 1 = 2\\nAnswer: 2", "Answer: 2\\nmore", "\\bAnswer: 2"])
    [1.0, 0.0, 0.0]
    """
    scores = []
    for c in completions:
        try:
            last = collapse(c).rsplit("\n", 1)[-1]
        except MalformedTrace:
            scores.append(0.0)
            continue
        scores.append(1.0 if last.startswith(ANSWER_PREFIX) else 0.0)
    return scores


def length_penalty(completions, max_chars: int = 2048, **kwargs) -> list[float]:
    """Minus the completion's share of the length budget, so a weight of w costs at most w.

    >>> length_penalty(["x" * 1024, "x" * 4096])
    [-0.5, -1.0]
    """
    return [-min(1.0, len(c) / max_chars) for c in completions]


REWARDS = {"correctness": correctness, "format": format_reward, "length": length_penalty}
