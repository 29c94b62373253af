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
from typing import Optional, Sequence

from solvers import variants
from solvers.trace import Answer, Backtrack, Event, Step, answer_line

LLM_PARAPHRASERS = ("openai", "anthropic")  # generate/llm.py: the steps' words come from a model
PARAPHRASERS = ("template", "none") + LLM_PARAPHRASERS


def words(task: ModuleType, events: Sequence[Event], paraphraser: str, rng: Optional[random.Random], *,
          style: str = "backspace", notes: bool = False, slips: float = 0.0,
          steps: Optional[Sequence[str]] = None) -> list[str]:
    """One string per event: a step's line, a backtrack's line, the answer line.

    A backtrack's line is the ``search`` style's "back to ..." line; with ``notes`` it is
    the kept note on the move that failed (in ``search``, the note and then the "back to"
    line). With ``slips=P`` each step is, with probability P, first written with a wrong
    result that is erased and corrected (``solvers.variants.slip``). ``steps`` are the
    steps' words given by an LLM paraphraser (one per Step event, in order); the other
    lines then use the plain wording. ``rng`` is consumed by the template paraphraser and
    by slips only, so ``paraphraser=none`` without slips ignores it.
    """
    plain = paraphraser != "template"
    pick = (lambda phrases: phrases[0]) if plain else rng.choice
    given = iter(steps) if steps is not None else None
    out = []
    live: list[dict] = []  # data of the live steps: a note is about the first abandoned one
    for event in events:
        if isinstance(event, Step):
            live.append(event.data)
            if given is not None:
                text = next(given)
            else:
                text = pick(task.step_phrases(event.data)).format(**task.step_slots(event.data))
            if slips > 0 and rng.random() < slips:
                text = variants.slip(text, rng) or text
            out.append(text)
        elif isinstance(event, Backtrack):
            failed = live[len(live) - event.k]
            del live[len(live) - event.k:]
            back = pick(task.BACK_PHRASES).format(**task.back_slots(event.state))
            note = pick(task.NOTE_PHRASES).format(**task.note_slots(failed, event.state)) if notes else ""
            out.append(note + back if style == "search" else (note or back))
        elif isinstance(event, Answer):
            out.append(answer_line(event.value))
        else:
            raise TypeError(f"not an event: {event!r}")
    return out
