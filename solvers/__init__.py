"""Programmatic solvers that record their search. Pure Python: no ML imports here.

One task = one module with the same parts (``Config``, ``HEURISTICS``, ``sample``, ``solve``,
``verify``, ``question``, ``puzzle_key``, ``parse_puzzle``, ``is_heldout`` and its wording:
``step_phrases``/``step_slots``, ``BACK_PHRASES``/``back_slots``, ``NOTE_PHRASES``/``note_slots``),
registered in the plain dict below. ``tests/test_tasks.py`` holds every entry to that contract.
"""

from solvers import arithmetic, countdown, graph, sudoku

TASKS = {
    countdown.NAME: countdown,
    arithmetic.NAME: arithmetic,
    graph.NAME: graph,
    sudoku.NAME: sudoku,
}
