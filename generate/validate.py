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
no_solution            (task=countdown) the complete search proves a given puzzle has no solution by the
                       game's rules (a positive whole number at every step)
no_goal                an imported search never reaches the goal (Stream of Search's "No solution found.",
                       Self-Backtracking backtrack samples of a puzzle with no solution sample)
contaminated           the puzzle or question is in the ``decontaminate=FILE`` list
unconvertible          an imported search (``traces=FILE on_bad_trace=skip``) could not be converted
propose_failed         a request to the ``llm_search`` proposer failed after the SDK's retries
=====================  =====================================================================

A task may add its own re-check of the collapsed page (``Task.check_page``): it runs after
every check above, and its reason, one of the task's own ``REASONS``, rejects the record
(task=program re-runs the programs: ``program_output_mismatch``, ``boxed_mismatch``; task=sudoku
counts the puzzle's solutions: ``multiple_solutions``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Optional

from solvers import TASKS, task_of
from solvers.arith import EQUATION, false_equations  # noqa: F401  (the validator's reading, written once)
from solvers.task import Task
from solvers.trace import ANSWER_PREFIX, MalformedTrace, collapse

BASE_REASONS = ("schema", "malformed_backspaces", "missing_answer_line", "answer_mismatch",
                "wrong_answer", "false_equation", "over_length", "split_leak", "duplicate",
                "no_puzzle", "unsolved", "no_solution", "no_goal", "contaminated", "unconvertible",
                "propose_failed")
REASONS = BASE_REASONS + tuple(r for t in TASKS.values() for r in t.REASONS if r not in BASE_REASONS)

_FIELDS = {"Question": str, "Reasoning": str}


def check(record: dict, task: Task | ModuleType | str, max_chars: int,
          split_of: Optional[Callable[[dict], str]] = None) -> Optional[str]:
    """The reason ``record`` is rejected, or None when it passes. ``task``: its Task (or the
    task's module or name).

    ``split_of(puzzle)`` gives the split a puzzle belongs to by content; None skips the
    leak check (given problems go wherever the user puts them).
    """
    task = task_of(task)
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
    if task.check_page is not None:  # a task's own re-check (program: re-runs every program)
        return task.check_page(puzzle, page)
    return None
