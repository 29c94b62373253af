"""Programmatic solvers that record their search. Pure Python: no ML imports here.

One task = one module with the same parts (``Config``, ``sample``, ``solve``, ``verify``,
``question``, ``puzzle_key``, ``parse_puzzle``, ``is_heldout`` and its step wording),
registered in the plain dict below.
"""

from solvers import countdown

TASKS = {
    countdown.NAME: countdown,
}
