"""LLM-proposed search: free-form questions with integer answers, solved one step at a time.

A puzzle is a line of a problems file, ``{"Question": "What is 12 + 7 * 3?", "Answer": 33}``
(the seed format's field names, verbatim; other fields, such as a seed record's
``Reasoning``, are ignored). The answer is an integer and is known in advance: this task
does not find answers, it finds *searches* that reach them, with their failures.

The search (the synthetic chain-of-thought recipe: each step its own LLM call, several
candidates, ranked by a validator, failures kept with their corrections):

1. At each node a proposer, ``propose(question, steps_so_far, k) -> list[str]``, gives ``k``
   candidate next steps (one line each). The pipeline injects ``generate.llm.Proposer``
   (an LLM through the same providers, cache and usage counting as the paraphraser); the
   tests inject plain Python functions. This module imports no SDK.
2. A checker (``solvers.arith``: sympy, plus the validator's one-operation reading) gives
   each candidate a verdict: ``answer`` ("Answer: N" with N the known answer),
   ``wrong_answer`` ("Answer: N" with another N), ``false`` (an equation in it is false),
   ``ok`` (every equation true, or none). Malformed candidates (empty, erasing characters,
   longer than 200 characters) and repeats of a step already on the path are dropped.
3. Depth-first search over the candidates, in the order the heuristic gives:
   ``checked`` (default) puts what passes first (the right answer, then steps whose
   equations the checker verified, then steps with no equation, then wrong answers, then
   false steps), keeping the model's order among equals; ``as_proposed`` keeps the model's
   order, so its first idea is tried first even when the checker knows better.
   An ``ok`` step is written and searched below; a wrong answer is written, then abandoned
   (erased in the backspace style); ``false`` steps are dropped unless
   ``false_steps=erase``, which writes them and erases them at once (see below). A node
   with nothing left, or at ``max_depth`` steps with no right answer proposed, is a dead
   end: the search backtracks. The right answer ends the search with an Answer event
   (no step is written for it: the pipeline writes the ``Answer: N`` line).

Why false steps are dropped by default: the ``search`` style keeps dead ends on the page,
and a record whose page holds a false equation is rejected (``false_equation``). With
``false_steps=erase`` the backspace, backtrack_token and direct styles get the recipe's
"wrong step, erased, corrected" traces; ``style=search`` then loses those records by name.

``max_steps`` is the node budget (steps written, kept or abandoned); every request to the
proposer is for a node reached by a written step (or the root), so a puzzle costs at most
``max_steps + 1`` requests. A puzzle not solved within the budget gives None ("unsolved").

Measured with the fake proposer of tests/llm_servers.py on 1,000 random "What is a op b op
c?" questions (operands 1-20, ops from + - *; it proposes the left-to-right step first, then a
false step, then the right one): all solved, 21% abandon a step (exactly those where a later
* binds tighter), backspace-style traces of 29 / 36 / 115 / 125 characters (min / p50 / p95 /
max), about 330 solves/s without a network. Real models write longer steps and pay one
request per node; the length budget (``max_chars``) rejects what overflows, by name.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from solvers.arith import check_arithmetic
from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import BACKSPACE, BACKTRACK_TOKEN, Event, Recorder

NAME = "llm_search"
HEURISTICS = ("checked", "as_proposed")
FALSE_STEPS = ("prune", "erase")
PROPOSES = True  # solve() takes propose=...; the pipeline passes generate.llm.Proposer
RECORDABLE = False  # no sampler: its questions come from a file

MAX_STEP_CHARS = 200      # a longer candidate is not a step; dropped
MAX_QUESTION_CHARS = 4000
MAX_ANSWER_CHARS = 64

Propose = Callable[[str, list, int], list]


@dataclass
class Config:
    k: int = 3                  # candidates asked for at each node
    max_depth: int = 8          # steps on a path before an answer must come
    max_steps: int = 16         # node budget: steps written, kept or abandoned
    heuristic: str = "checked"  # checked | as_proposed
    false_steps: str = "prune"  # prune | erase (write a false step, then erase it)

    def __post_init__(self) -> None:
        check_int_range("task.k", self.k, 1, 10)
        check_int_range("task.max_depth", self.max_depth, 1, 100)
        check_int_range("task.max_steps", self.max_steps, 1, 10**4)
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_choice("task.false_steps", self.false_steps, FALSE_STEPS)


# ----------------------------------------------------------------------------- puzzles

def question(puzzle: dict) -> str:
    """The question on one line (runs of whitespace, newlines included, become one space)."""
    return " ".join(puzzle["Question"].split())


def puzzle_key(puzzle: dict) -> str:
    """The normalised question: the same words in another case or spacing are the same problem."""
    return question(puzzle).lower()


def is_heldout(puzzle: dict, config: Config) -> bool:
    return False


def parse_puzzle(obj: Any) -> dict:
    """Check a line of a problems file; raise ValueError naming the field that is wrong.

    >>> parse_puzzle({"Question": "What is 2 + 2?", "Answer": 4, "Reasoning": "ignored"})
    {'Question': 'What is 2 + 2?', 'Answer': 4}
    >>> parse_puzzle({"Question": "What is 2 + 2?", "Answer": "4"})
    Traceback (most recent call last):
    ...
    ValueError: 'Answer' must be an integer, got '4'
    """
    if not isinstance(obj, dict):
        raise ValueError(f'expected an object like {{"Question": "...", "Answer": 42}}, got {type(obj).__name__}')
    q, a = obj.get("Question"), obj.get("Answer")
    if not isinstance(q, str) or not q.strip():
        raise ValueError(f"'Question' must be a non-empty string, got {q!r:.80}")
    if len(q) > MAX_QUESTION_CHARS or BACKSPACE in q or BACKTRACK_TOKEN in q:
        raise ValueError(f"'Question' must be under {MAX_QUESTION_CHARS} characters with no U+0008 "
                         f"or {BACKTRACK_TOKEN}")
    if type(a) is not int:
        raise ValueError(f"'Answer' must be an integer, got {a!r:.80}")
    return {"Question": q, "Answer": a}


def sample(config: Config, rng: random.Random) -> dict:
    raise ConfigError("problems", 'task=llm_search needs problems=FILE: a JSONL file of {"Question", "Answer"}')


# ----------------------------------------------------------------------------- the checker

_ANSWER = re.compile(r"answer\s*:\s*(.*?)\.?", re.IGNORECASE)
# checked order: the right answer, verified steps, steps with nothing to verify, wrong answers, false steps
_RANK = {"answer": 0, "ok+": 1, "ok": 2, "wrong_answer": 3, "false": 4}


@dataclass
class Candidate:
    text: str
    verdict: str          # answer | wrong_answer | false | ok
    equations: int = 0


def judge(puzzle: dict, text: Any) -> Optional[Candidate]:
    """The checker's verdict on one proposed step, or None when it is not a step at all.

    >>> p = {"Question": "What is 12 + 7 * 3?", "Answer": 33}
    >>> [judge(p, t).verdict for t in ["7 * 3 = 21", "7 * 3 = 24", "Answer: 33", "answer: 57."]]
    ['ok', 'false', 'answer', 'wrong_answer']
    >>> judge(p, "12 + 7 * 3 = 33").verdict   # true, but the page would read "7 * 3 = 33"
    'false'
    >>> judge(p, "  ") is None, judge(p, "x" * 201) is None
    (True, True)
    """
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())  # one line
    if not text or len(text) > MAX_STEP_CHARS or BACKSPACE in text or BACKTRACK_TOKEN in text:
        return None
    m = _ANSWER.fullmatch(text)
    if m:
        return Candidate(text, "answer" if verify(puzzle, m[1]) else "wrong_answer")
    wrong, n = check_arithmetic(text)
    return Candidate(text, "false" if wrong else "ok", n)


def order(candidates: list[Candidate], heuristic: str) -> list[Candidate]:
    if heuristic == "as_proposed":
        return list(candidates)
    return sorted(candidates, key=lambda c: _RANK["ok+" if c.verdict == "ok" and c.equations else c.verdict])


# ----------------------------------------------------------------------------- search

class _OutOfBudget(Exception):
    pass


def solve(puzzle: dict, config: Config, rng: random.Random,
          propose: Optional[Propose] = None) -> list[Event] | None:
    """Depth-first search over proposed steps, recorded. Returns the events, or None when
    the budget runs out or every path dies. ``rng`` is unused: the proposer is the
    randomness (and its answers are cached, so a re-run makes the same search)."""
    if propose is None:
        raise ValueError("llm_search.solve needs propose(question, steps, k) -> list[str]; "
                         "python -m generate passes an LLM proposer (proposer=openai|anthropic)")
    q = question(puzzle)
    rec = Recorder()
    path: list[dict] = []  # data of the live steps, root first

    def dfs() -> bool:
        seen = {d["text"] for d in path}  # a step already on the path is no progress
        candidates = []
        for text in list(propose(q, [d["text"] for d in path], config.k) or [])[:config.k]:
            c = judge(puzzle, text)
            if c is None or c.text in seen or (c.verdict == "false" and config.false_steps == "prune"):
                continue
            seen.add(c.text)
            candidates.append(c)
        for c in order(candidates, config.heuristic):
            if c.verdict == "answer":
                if path:  # the step that completed the solution: think never drops it
                    path[-1]["final"] = True
                rec.answer(puzzle["Answer"])
                return True
            if c.verdict == "ok" and len(path) >= config.max_depth:
                continue  # at the depth limit only an answer may follow
            if rec.steps >= config.max_steps:
                raise _OutOfBudget
            data = {"text": c.text, "final": False}
            rec.step(data)
            if c.verdict == "ok":
                path.append(data)
                if dfs():
                    return True
                path.pop()
            # a wrong answer, a false step (false_steps=erase) or a dead subtree: abandoned
            rec.backtrack({"depth": len(path)})
        return False

    try:
        return rec.events if dfs() else None
    except _OutOfBudget:
        return None


# ----------------------------------------------------------------------------- words

# The step's words are the model's own (already one line); the template paraphraser has
# nothing to vary, so there is one phrase.
STEP_PHRASES = ("{text}\n",)
BACK_PHRASES = (
    "That fails. Back to {where}.\n",
    "Dead end; back to {where}.\n",
    "That doesn't work. Back to {where}.\n",
    "No good. Back to {where}.\n",
)
# The notes variant: kept after an erasure. It never repeats the step (that could be a
# false equation, which must not stay on the page).
NOTE_PHRASES = (
    "(That step was wrong.)\n",
    "(That was a dead end.)\n",
    "(Scratch that.)\n",
    "(That led nowhere.)\n",
)


def step_phrases(data: dict) -> tuple[str, ...]:
    return STEP_PHRASES


def step_slots(data: dict) -> dict:
    return {"text": data["text"]}


def back_slots(state: dict) -> dict:
    depth = state["depth"]
    return {"where": "the question" if depth == 0 else f"step {depth}"}


def note_slots(data: dict, state: dict) -> dict:
    return {}


# ----------------------------------------------------------------------------- verifier

def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` is the known integer Answer: the int itself, or its text
    (surrounding spaces allowed; no "+", no ".0", no thousands separators). Never raises.

    >>> p = {"Question": "What is 12 + 7 * 3?", "Answer": 33}
    >>> verify(p, 33), verify(p, " 33 "), verify(p, "33.0"), verify(p, True), verify(p, "9" * 10**5)
    (True, True, False, False, False)
    """
    want = puzzle.get("Answer") if isinstance(puzzle, dict) else None
    if type(answer) is int:
        return answer == want
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return False
    text = answer.strip()
    return re.fullmatch(r"-?\d+", text) is not None and int(text) == want
