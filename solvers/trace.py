"""The trace model: what a solver did, and the text a model is trained on.

A solver records *events* as it searches; it never formats text. An event is one of

- ``Step(data)``: a step taken (``data`` is the task's JSON-able description of it),
- ``Backtrack(k, state)``: the last ``k`` live steps are abandoned; ``state`` describes
  where the search is back to (used by the ``search`` style's "back to ..." line),
- ``Answer(value)``: the final answer.

Text is made in two separate moves. First every event gets its *words* (one string per
event, chosen by a paraphraser: see ``generate.paraphrase``). Then ``render(events, words,
style)`` lays the words out in one of four styles:

- ``backspace`` (default): an abandoned step's text stays in the stream and is followed
  by one U+0008 per character, the way a person at a keyboard erases it;
- ``backtrack_token``: one ``<backtrack>`` marker per abandoned step (Self-Backtracking);
- ``search``: dead ends stay visible, followed by a plain "back to ..." line (Stream of
  Search);
- ``direct``: only the path that worked.

Every step's words end with a newline and contain no other newline, so a step is a line.
That is what lets ``<backtrack>`` erase "the last step" without knowing its length.

The invariant the rest of the project leans on, property-tested for every task:
``collapse(render(events, words, s)) == render(events, words, "direct")`` for ``s`` in
``backspace`` and ``backtrack_token``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

BACKSPACE = "\b"  # U+0008
BACKTRACK_TOKEN = "<backtrack>"
ANSWER_PREFIX = "Answer: "
STYLES = ("backspace", "backtrack_token", "search", "direct")
ERASING_STYLES = ("backspace", "backtrack_token")


@dataclass(frozen=True)
class Step:
    data: dict


@dataclass(frozen=True)
class Backtrack:
    k: int = 1
    state: Any = None


@dataclass(frozen=True)
class Answer:
    value: Any


Event = Union[Step, Backtrack, Answer]


class MalformedTrace(ValueError):
    """A text whose erasures do not fit it: more erasure than text, or a marker with no
    step before it."""


class Recorder:
    """What a solver writes its search into.

    Consecutive backtracks merge into one ``Backtrack(k)`` so that the ``search`` style
    says "back to ..." once per return, not once per level popped.

    >>> r = Recorder()
    >>> r.step({"n": 1}); r.step({"n": 2}); r.backtrack("b"); r.backtrack("a")
    >>> r.step({"n": 3}); r.answer(3)
    >>> [type(e).__name__ for e in r.events]
    ['Step', 'Step', 'Backtrack', 'Step', 'Answer']
    >>> r.events[2]
    Backtrack(k=2, state='a')
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.steps = 0  # steps written so far, kept or not: the solver's budget counts these
        self._pending = 0
        self._pending_state: Any = None

    def _flush(self) -> None:
        if self._pending:
            self.events.append(Backtrack(self._pending, self._pending_state))
            self._pending = 0

    def step(self, data: dict) -> None:
        self._flush()
        self.events.append(Step(data))
        self.steps += 1

    def backtrack(self, state: Any = None) -> None:
        self._pending += 1
        self._pending_state = state

    def answer(self, value: Any) -> None:
        self._flush()
        self.events.append(Answer(value))


def check_events(events: Sequence[Event]) -> None:
    """Raise ValueError unless ``events`` is a well-formed search: backtracks never abandon
    more steps than are live, and the sequence ends with exactly one Answer."""
    live = 0
    for i, event in enumerate(events):
        if isinstance(event, Step):
            live += 1
        elif isinstance(event, Backtrack):
            if event.k < 1 or event.k > live:
                raise ValueError(f"event {i}: Backtrack({event.k}) with {live} live steps")
            live -= event.k
        elif isinstance(event, Answer):
            if i != len(events) - 1:
                raise ValueError(f"event {i}: Answer before the end of the trace")
        else:
            raise ValueError(f"event {i}: not an event: {event!r}")
    if not events or not isinstance(events[-1], Answer):
        raise ValueError("a trace ends with an Answer event")


def answer_line(value: Any) -> str:
    return f"{ANSWER_PREFIX}{value}"


def render(events: Sequence[Event], words: Sequence[str], style: str = "backspace",
           notes: bool = False) -> str:
    """Lay out ``words`` (one string per event) in ``style``.

    Step words end in exactly one newline; Backtrack words are the ``search`` style's
    "back to ..." line (or, with ``notes``, the note kept after an erasure); the Answer's
    words are its answer line.

    >>> ev = [Step({}), Backtrack(1), Step({}), Answer(5)]
    >>> w = ["2+2=5\\n", "Back.\\n", "2+3=5\\n", "Answer: 5"]
    >>> render(ev, w, "backspace")
    '2+2=5\\n\\x08\\x08\\x08\\x08\\x08\\x082+3=5\\nAnswer: 5'
    >>> render(ev, w, "backtrack_token")
    '2+2=5\\n<backtrack>2+3=5\\nAnswer: 5'
    >>> render(ev, w, "search")
    '2+2=5\\nBack.\\n2+3=5\\nAnswer: 5'
    >>> render(ev, w, "direct")
    '2+3=5\\nAnswer: 5'

    With ``notes`` the Backtrack's words stay on the page after the erasure, in every style
    but ``search`` (which shows them anyway). A note belongs to the state the search went
    back to: when that state is abandoned in turn, its notes are erased with it.

    >>> w = ["2+2=5\\n", "(2+2 fails)\\n", "2+3=5\\n", "Answer: 5"]
    >>> render(ev, w, "backspace", notes=True).replace("\\b", "<")
    '2+2=5\\n<<<<<<(2+2 fails)\\n2+3=5\\nAnswer: 5'
    >>> render(ev, w, "direct", notes=True)
    '(2+2 fails)\\n2+3=5\\nAnswer: 5'

    A word may carry its own erasure (a slip: ``"2+3=6\\b5\\n"``). Only the ``backspace``
    style writes it; the others write what it collapses to, and erasing such a step erases
    what is left of it on the page.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}; got {style!r}")
    if len(words) != len(events):
        raise ValueError(f"{len(words)} words for {len(events)} events")
    out: list[str] = []
    page: list[tuple[int, bool]] = []  # (position in out, is a step) of each live line
    for event, text in zip(events, words):
        if style != "backspace" and BACKSPACE in text:
            text = collapse(text)
        if isinstance(event, Step):
            page.append((len(out), True))
            out.append(text)
        elif isinstance(event, Backtrack):
            abandoned: list[int] = []  # the k steps and every note written after the first
            steps = 0
            while steps < event.k:
                i, is_step = page.pop()
                abandoned.append(i)
                steps += is_step
            if style == "backspace":
                out.append(BACKSPACE * sum(_kept_length(out[i]) for i in abandoned))
            elif style == "backtrack_token":
                out.append(BACKTRACK_TOKEN * len(abandoned))
            elif style == "direct":  # the abandoned lines were never written
                for i in abandoned:
                    out[i] = ""
            if style == "search":
                out.append(text)
            elif notes:
                page.append((len(out), False))
                out.append(text)
        else:
            out.append(text)
    return "".join(out)


def _kept_length(text: str) -> int:
    return len(collapse(text)) if BACKSPACE in text else len(text)


def _apply(text: str) -> tuple[list[int], list[bool]]:
    """Replay the typing of ``text``: the indices of the characters left on the page, and
    for every character whether something later erased it. One pass; the single place that
    knows how backspaces and markers erase."""
    erased = [False] * len(text)
    page: list[int] = []  # indices into text of the characters still on the page
    i, n = 0, len(text)
    while i < n:
        if text[i] == BACKSPACE:
            if not page:
                raise MalformedTrace(f"backspace at character {i} has nothing left to erase")
            erased[page.pop()] = True
            i += 1
        elif text[i] == "<" and text.startswith(BACKTRACK_TOKEN, i):
            if not page or text[page[-1]] != "\n":
                raise MalformedTrace(
                    f"{BACKTRACK_TOKEN} at character {i} does not follow a complete step")
            erased[page.pop()] = True
            while page and text[page[-1]] != "\n":
                erased[page.pop()] = True
            i += len(BACKTRACK_TOKEN)
        else:
            page.append(i)
            i += 1
    return page, erased


def collapse(text: str) -> str:
    """Apply backspaces and ``<backtrack>`` markers: what is left on the page.

    Each U+0008 erases the character before it; each ``<backtrack>`` erases the last
    complete line (a step) before it. A stream that erases more than was written raises
    ``MalformedTrace``.

    >>> collapse("12+3=16\\b\\b15")
    '12+3=15'
    >>> collapse("try 1\\ntry 2\\n<backtrack>try 3\\n")
    'try 1\\ntry 3\\n'
    >>> collapse("a\\b\\b")
    Traceback (most recent call last):
    ...
    solvers.trace.MalformedTrace: backspace at character 2 has nothing left to erase
    """
    if BACKSPACE not in text and BACKTRACK_TOKEN not in text:
        return text
    page, _ = _apply(text)
    return "".join([text[i] for i in page])


def erased_mask(text: str) -> list[bool]:
    """For each character of ``text``, whether a later backspace or marker erases it.

    The erasing characters themselves are not erased (a model must learn to type them):
    this is the mask ``sft.mask_erased`` uses to leave dead ends out of the loss.

    >>> erased_mask("ab\\b\\bc")
    [True, True, False, False, False]
    >>> erased_mask("x\\ny\\n<backtrack>")[:4]
    [False, False, True, True]
    """
    return _apply(text)[1]


def final_answer(collapsed: str) -> str | None:
    """The text of the last ``Answer:`` line of an already collapsed text, or None.

    >>> final_answer("2+3=5\\nAnswer: 5")
    '5'
    >>> final_answer("no answer here") is None
    True
    """
    for line in reversed(collapsed.splitlines()):
        if line.startswith(ANSWER_PREFIX):
            return line[len(ANSWER_PREFIX):].strip()
    return None


def stats(events: Sequence[Event], text: str) -> dict:
    """Counts a record carries: steps written, steps abandoned, backspaces, characters."""
    steps = sum(isinstance(e, Step) for e in events)
    abandoned = sum(e.k for e in events if isinstance(e, Backtrack))
    return {
        "steps": steps,
        "abandoned_steps": abandoned,
        "backspaces": text.count(BACKSPACE),
        "characters": len(text),
    }
