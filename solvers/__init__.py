"""Programmatic solvers that record their search. Pure Python: no ML imports here.

One task = one module; ``solvers/task.py`` declares the parts every task has and the optional
ones, and ``register`` checks a module against it. ``TASKS`` maps a task's name to its ``Task``.
``tests/test_tasks.py`` holds every entry to the contract in use.
"""

from solvers import arithmetic, countdown, equation24, graph, llm_search, program, sudoku
from solvers.task import Task, register

TASKS: dict[str, Task] = {}
for _module in (countdown, arithmetic, graph, sudoku, equation24,
                llm_search,  # needs problems=FILE and a proposer: solve(..., propose=)
                program):    # runs every program it writes in solvers/sandbox.py
    register(_module, TASKS)

# Human traces that name no task (generate/human.py) are checked against their known Answer.
HUMAN = "human"


def known_answer(puzzle: dict, answer) -> bool:
    """The verifier of a trace whose puzzle is just ``{"Question", "Answer"}``: the answer,
    as an integer or its text, equals the known Answer.

    >>> known_answer({"Question": "What is 2 + 2?", "Answer": 4}, " 4 "), known_answer({"Answer": 4}, "4.0")
    (True, False)
    """
    want = puzzle.get("Answer")
    if isinstance(answer, str) and len(answer) <= 64:
        return answer.strip() == str(want)
    return type(answer) is type(want) and answer == want


def verifier(task: str):
    """``verify(puzzle, answer)`` for a record's task: the task's own, or for human traces
    without one the known-answer check."""
    return known_answer if task == HUMAN else TASKS[task].verify


def task_of(what) -> Task:
    """The registered ``Task`` of a task name, a task module or a ``Task``.

    >>> task_of("countdown") is task_of(countdown) is TASKS["countdown"]
    True
    """
    if isinstance(what, Task):
        return what
    name = what if isinstance(what, str) else getattr(what, "NAME", None)
    if name not in TASKS:
        raise KeyError(f"no task {name!r}: the tasks are {', '.join(TASKS)}")
    return TASKS[name]
