"""Programmatic solvers that record their search. Pure Python: no ML imports here.

One task = one module with the same parts (``Config``, ``HEURISTICS``, ``sample``, ``solve``,
``verify``, ``question``, ``puzzle_key``, ``parse_puzzle``, ``is_heldout`` and its wording:
``step_phrases``/``step_slots``, ``BACK_PHRASES``/``back_slots``, ``NOTE_PHRASES``/``note_slots``),
registered in the plain dict below. ``tests/test_tasks.py`` holds every entry to that contract.
"""

from solvers import arithmetic, countdown, graph, llm_search, program, sudoku

TASKS = {
    countdown.NAME: countdown,
    arithmetic.NAME: arithmetic,
    graph.NAME: graph,
    sudoku.NAME: sudoku,
    llm_search.NAME: llm_search,  # needs problems=FILE and a proposer: solve(..., propose=)
    program.NAME: program,  # runs every program it writes in solvers/sandbox.py
}

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
