"""Wording: one string per event, chosen without touching the structure of the search.

A paraphraser rewrites how each step is said, never what it says or where it sits. The
renderer lays the words out afterwards, so the backspaces that erase a step are counted
from the text actually written and always match it.

- ``none``: the plain wording (the first phrase of each of the task's lists);
- ``template`` (default, offline): a phrase per step drawn with the item's randomness, so
  traces read like a person thinking aloud ("Let me try 98 - 38 = 60. That leaves ...").
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Sequence

from solvers.trace import Answer, Backtrack, Event, Step, answer_line

PARAPHRASERS = ("template", "none")


def words(task: ModuleType, events: Sequence[Event], paraphraser: str,
          rng: random.Random) -> list[str]:
    """One string per event: a step's line, a backtrack's "back to ..." line, the answer
    line. ``rng`` is only consumed by the template paraphraser."""
    pick = (lambda phrases: phrases[0]) if paraphraser == "none" else rng.choice
    out = []
    for event in events:
        if isinstance(event, Step):
            out.append(pick(task.step_phrases(event.data)).format(**task.step_slots(event.data)))
        elif isinstance(event, Backtrack):
            out.append(pick(task.BACK_PHRASES).format(**task.back_slots(event.state)))
        elif isinstance(event, Answer):
            out.append(answer_line(event.value))
        else:
            raise TypeError(f"not an event: {event!r}")
    return out
