"""Trace variants every task gets for free: ``think`` (steps left implicit) and ``slips``
(a step first written with a wrong number, noticed, erased and corrected).

Both act on what a solver recorded or on the words chosen for it, never inside a solver,
so a task module only has to record its search. The other two variants live elsewhere:
``mix`` (a heuristic drawn per item) in the pipeline, ``notes`` in ``trace.render`` and the
paraphraser.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from solvers.trace import BACKSPACE, Backtrack, Event, Step

# A slip site: an integer written as a result, "= 17" or "= -7".
_RESULT = re.compile(r"= (-?\d+)")


def think(events: Sequence[Event], p: float, rng: random.Random) -> list[Event]:
    """Drop each non-final step with probability ``p``: the search still did it, the trace
    no longer says so. Backtracks shrink by the dropped steps they would have erased; one
    left with nothing to erase disappears, and two that then meet merge into one.

    >>> ev = [Step({"n": 1}), Step({"n": 2}), Backtrack(2, "root"), Step({"n": 3, "final": True})]
    >>> think(ev, 0.0, random.Random(0)) == ev
    True
    >>> think(ev, 1.0, random.Random(0))
    [Step(data={'n': 3, 'final': True})]
    """
    if p <= 0:
        return list(events)
    out: list[Event] = []
    live: list[bool] = []  # for each live step of the original: whether it was written
    for event in events:
        if isinstance(event, Step):
            written = bool(event.data.get("final")) or rng.random() >= p
            live.append(written)
            if written:
                out.append(event)
        elif isinstance(event, Backtrack):
            k = sum(live[len(live) - event.k:])
            del live[len(live) - event.k:]
            if k and out and isinstance(out[-1], Backtrack):
                out[-1] = Backtrack(out[-1].k + k, event.state)
            elif k:
                out.append(Backtrack(k, event.state))
        else:
            out.append(event)
    return out


def wrong_number(value: int, rng: random.Random) -> int:
    """A plausible wrong result: one off, ten off, or the last two digits swapped; never
    the value itself, never a sign change, and a one-digit positive value stays a digit 1-9
    (a Sudoku cell is never written 0 or 10).

    >>> sorted({wrong_number(5, random.Random(s)) for s in range(50)})
    [4, 6]
    >>> all(wrong_number(v, random.Random(s)) != v for v in range(-30, 300) for s in range(5))
    True
    """
    sign, mag = (-1, -value) if value < 0 else (1, value)
    candidates = {mag - 1, mag + 1}
    if mag >= 10:
        candidates |= {mag - 10, mag + 10}
        digits = str(mag)
        if digits[-1] != digits[-2]:
            candidates.add(int(digits[:-2] + digits[-1] + digits[-2]))
    lo = 1 if 0 < mag < 10 else 0
    hi = 9 if 0 < mag < 10 else None
    candidates = sorted(c for c in candidates
                        if c != mag and c >= lo and (hi is None or c <= hi) and len(str(c)) <= len(str(mag)) + 1)
    return sign * rng.choice(candidates)


def slip(text: str, rng: random.Random) -> str | None:
    """``text`` with one written result first mistyped, then erased and corrected, or None
    when the text writes no result.

    >>> slip("25 - 8 = 17. Left: 3, 17.\\n", random.Random(1)).replace(BACKSPACE, "⌫")
    '25 - 8 = 71⌫⌫17. Left: 3, 17.\\n'
    >>> slip("Go to b2.\\n", random.Random(0)) is None
    True
    """
    sites = list(_RESULT.finditer(text))
    if not sites:
        return None
    m = rng.choice(sites)
    wrong = str(wrong_number(int(m[1]), rng))
    return text[:m.start(1)] + wrong + BACKSPACE * len(wrong) + text[m.start(1):]
