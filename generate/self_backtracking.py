"""Self-Backtracking's layouts (Yang et al., 2025; LAMDASZ-ML/Self-Backtracking), out and in.

Layout ``self_backtracking``: rows ``{"nums", "target", "search_path"}`` of two kinds. A
*solution sample* is the solution's steps, one per line (``68 - 38 = 30``), then ``Goal
Reached!``. A *backtrack sample* is a prefix of the solution, one wrong step (a legal move
on the numbers left from which the target cannot be reached) and a last ``<backtrack>``
line: their ``src/train.py`` leaves that wrong step out of the loss. Export writes a
solution sample per puzzle plus ``task.sb_backtrack_samples`` backtrack samples for a
share ``task.sb_backtrack_ratio`` of puzzles. Import groups the samples of one puzzle
(same numbers and target, anywhere in the file; their self-improvement files'
``###Question: numbers [...]->target T\n###Response:\n...`` text too) into one search:
each wrong step is taken and taken back (real backspaces when rendered) before the
solution goes on from the prefix it hangs from.

``self_backtracking_search``: this project's earlier layout of one long search per
puzzle, ``<backtrack>`` lines inside it and ``Goal Reached!`` at the end.

``generate.interop`` holds the registry of layouts and the entry points (``export``, ``read_traces``).
"""

from __future__ import annotations

import random
import re
from typing import Any, Optional

from generate.replay import ConversionError, NoGoal, _puzzle, _Search
from solvers import countdown
from solvers.trace import Answer, Backtrack, Event, Step  # noqa: F401 (Answer: the doctests' events)

SB_BACKTRACK = "<backtrack>"
SB_GOAL = "Goal Reached!"


def _ops(a: int, op: str, b: int, spaced: bool) -> str:
    return f"{a} {op} {b}" if spaced else f"{a}{op}{b}"


def _move(data: dict, spaced: bool) -> str:
    return f"{_ops(data['a'], data['op'], data['b'], spaced)}{' = ' if spaced else '='}{data['result']}"


def _sb_line(data: dict) -> str:
    return f"{data['a']} {data['op']} {data['b']} = {data['result']}"


def _wrong_steps(puzzle: dict, events: list[Event]) -> tuple[list[Step], list[tuple[int, dict]], list[tuple[int, dict]]]:
    """(the solution's steps, wrong steps the search really took off the solution's path,
    other wrong steps), each wrong step as (depth, step data): a legal move on the numbers
    left after ``depth`` steps of the solution from which the target cannot be reached."""
    live: list[int] = []
    taken: list[tuple[list[int], int]] = []
    for i, e in enumerate(events):
        if isinstance(e, Step):
            taken.append((list(live), i))
            live.append(i)
        elif isinstance(e, Backtrack):
            del live[len(live) - e.k:]
    path = live
    solution = [events[i] for i in path]
    met = [(len(before), events[i].data) for before, i in taken
           if i not in path and before == path[:len(before)]]
    target, numbers = puzzle["target"], list(puzzle["numbers"])
    seen = {(d, x["a"], x["op"], x["b"]) for d, x in met}
    others: list[tuple[int, dict]] = []
    for depth, step in enumerate(solution):
        for i in range(len(numbers)):
            for j in range(i + 1, len(numbers)):
                rest = [n for k, n in enumerate(numbers) if k not in (i, j)]
                for a, op, b in countdown._combine(numbers[i], numbers[j]):
                    r = countdown._apply(a, op, b)
                    left = sorted(rest + [r])
                    if (depth, a, op, b) in seen:
                        continue
                    seen.add((depth, a, op, b))
                    if len(left) == 1:
                        dead = r != target
                    else:
                        dead = countdown.search({"numbers": left, "target": target}, countdown.Config(),
                                                random.Random(0), None)[1] == "no_solution"
                    if dead:
                        others.append((depth, {"a": a, "op": op, "b": b, "result": r, "left": left, "final": False}))
        d = step.data
        numbers.remove(d["a"])
        numbers.remove(d["b"])
        numbers.append(d["result"])
    return solution, met, others


def to_self_backtracking(puzzle: dict, events: list[Event], backtrack_samples: int = 1,
                         ratio: float = 1.0, rng: Optional[random.Random] = None) -> list[dict]:
    """A record as Self-Backtracking's training data has it: a solution sample, then (for a
    share ``ratio`` of puzzles) ``backtrack_samples`` backtrack samples, each a prefix of the
    solution, one wrong step and ``<backtrack>``. Wrong steps the search really took are
    used first, then other moves from which the target cannot be reached.

    >>> ev = [Step({"a": 5, "op": "+", "b": 3, "result": 8, "left": [2, 8], "final": False}),
    ...       Backtrack(1), Step({"a": 5, "op": "*", "b": 2, "result": 10, "left": [3, 10], "final": False}),
    ...       Step({"a": 10, "op": "+", "b": 3, "result": 13, "left": [], "final": True}), Answer("5 * 2 + 3")]
    >>> for row in to_self_backtracking({"numbers": [5, 3, 2], "target": 13}, ev):
    ...     print(row["search_path"]); print("--")
    5 * 2 = 10
    10 + 3 = 13
    Goal Reached!
    --
    5 + 3 = 8
    <backtrack>
    --
    """
    rng = rng or random.Random(countdown.puzzle_key(puzzle))
    head = {"nums": list(puzzle["numbers"]), "target": puzzle["target"]}
    solution, met, others = _wrong_steps(puzzle, events)
    lines = [_sb_line(e.data) for e in solution]
    out = [{**head, "search_path": "\n".join(lines + [SB_GOAL])}]
    want = backtrack_samples if rng.random() < ratio else 0
    if want:
        chosen = rng.sample(met, len(met)) + rng.sample(others, len(others))
        for depth, data in chosen[:want]:
            out.append({**head, "search_path": "\n".join(lines[:depth] + [_sb_line(data), SB_BACKTRACK])})
    return out


def to_self_backtracking_search(puzzle: dict, events: list[Event]) -> dict:
    """A record as one long search: one step per line, ``<backtrack>`` lines, ``Goal Reached!``.

    >>> ev = [Step({"a": 5, "op": "+", "b": 3, "result": 8, "left": [8, 2], "final": False}),
    ...       Backtrack(1), Step({"a": 5, "op": "*", "b": 2, "result": 10, "left": [3, 10], "final": False}),
    ...       Step({"a": 10, "op": "+", "b": 3, "result": 13, "left": [], "final": True}), Answer("5 * 2 + 3")]
    >>> print(to_self_backtracking_search({"numbers": [5, 3, 2], "target": 13}, ev)["search_path"])
    5 + 3 = 8
    <backtrack>
    5 * 2 = 10
    10 + 3 = 13
    Goal Reached!
    """
    lines = []
    for event in events:
        if isinstance(event, Step):
            lines.append(_move(event.data, spaced=True))
        elif isinstance(event, Backtrack):
            lines.extend([SB_BACKTRACK] * event.k)
        else:
            lines.append(SB_GOAL)
    return {"nums": list(puzzle["numbers"]), "target": puzzle["target"], "search_path": "\n".join(lines)}


_SB_STEP = re.compile(r"^(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*((?:<backtrack>\s*)*)$")


def from_self_backtracking_search(obj: Any) -> tuple[dict, list[Event]]:
    """(puzzle, events) of one long search with ``<backtrack>`` lines (``self_backtracking_search``).

    >>> p, ev = from_self_backtracking_search({"nums": [5, 3, 2], "target": 13,
    ...     "search_path": "5 + 3 = 8\\n<backtrack>\\n5 * 2 = 10\\n10 + 3 = 13\\nGoal Reached!"})
    >>> [type(e).__name__ for e in ev], ev[-1].value
    (['Step', 'Backtrack', 'Step', 'Step', 'Answer'], '5 * 2 + 3')
    """
    puzzle, path = _sb_item(obj)
    search = _Search(puzzle)
    for n, line in enumerate(path.split("\n"), 1):
        line = line.strip()
        try:
            if not line:
                continue
            if line == SB_GOAL:
                break
            if set(line.replace(SB_BACKTRACK, "").strip()) == set():
                search.back(line.count(SB_BACKTRACK))
                continue
            m = _SB_STEP.match(line)
            if not m:
                raise ConversionError("not a step ('a op b = c'), a <backtrack> line or 'Goal Reached!'")
            search.step(int(m[1]), m[2], int(m[3]), int(m[4]))
            if m[5]:
                search.back(m[5].count(SB_BACKTRACK))
        except ConversionError as e:
            raise ConversionError(f"search_path line {n} ({line[:60]!r}): {e}") from None
    return puzzle, search.finish()


_SB_QUESTION = re.compile(r"###Question: numbers \[([\d, ]*)\]\s*->\s*target (\d+)\s*###Response:\n?", re.DOTALL)
_SB_SPECIAL = ("<|begin_of_text|>", "<|end_of_text|>", "<|endoftext|>", "<|eot_id|>", "</s>")


def _sb_item(obj: Any) -> tuple[dict, str]:
    """(puzzle, response text) of a Self-Backtracking item: ``{"nums", "target",
    "search_path"}``, where the search path may carry their prompt (``###Question: numbers
    [...]->target T\n###Response:\n``, as their self-improvement files do), or such a text
    alone (a string, or an object with ``search_path``, ``model_output`` or ``text``)."""
    if isinstance(obj, str):
        obj = {"search_path": obj}
    if not isinstance(obj, dict):
        raise ConversionError(f"expected an object with nums, target and search_path; got {type(obj).__name__}")
    text = next((obj[k] for k in ("search_path", "model_output", "text") if k in obj), None)
    if not isinstance(text, str):
        raise ConversionError("'search_path' must be a string" if "search_path" in obj else "missing field 'search_path'")
    for token in _SB_SPECIAL:
        text = text.replace(token, "")
    m = _SB_QUESTION.search(text)
    if m:
        asked = {"nums": [int(x) for x in m[1].split(",") if x.strip()], "target": int(m[2])}
        for key in ("nums", "target"):
            if key in obj and obj[key] != asked[key]:
                raise ConversionError(f"'{key}' is {obj[key]} but the ###Question says {asked[key]}")
        obj, text = {**obj, **asked}, text[m.end():]
    return _puzzle({**obj, "search_path": text}), text


def _sb_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _sb_moves(puzzle: dict, lines: list[str]) -> list[tuple[int, str, int, int]]:
    """The steps of a sample, each checked as a legal move on the numbers left."""
    search, moves = _Search(puzzle), []
    for n, line in enumerate(lines, 1):
        m = _SB_STEP.match(line)
        if not m or m[5]:
            raise ConversionError(f"line {n} ({line[:60]!r}): not a step ('a op b = c')")
        try:
            search.step(int(m[1]), m[2], int(m[3]), int(m[4]))
        except ConversionError as e:
            raise ConversionError(f"line {n} ({line[:60]!r}): {e}") from None
        moves.append((int(m[1]), m[2], int(m[3]), int(m[4])))
    return moves


def _same_move(x: tuple, y: tuple) -> bool:
    """The same move, whichever way round + and * name their numbers."""
    if x[1] != y[1] or x[3] != y[3]:
        return False
    return (x[0], x[2]) == (y[0], y[2]) or (x[1] in "+*" and (x[0], x[2]) == (y[2], y[0]))


def read_self_backtracking(items: list[tuple[str, Any]]) -> tuple[list[tuple], dict]:
    """Self-Backtracking samples grouped by puzzle, each group one search: per group
    ``(puzzle, events)``, or ``(puzzle, None, "no_goal")`` for a puzzle with backtrack samples
    only. Errors are ``(where, ConversionError)`` entries. Also counts what was read.

    A group's search takes the first solution sample's steps; before each step, the wrong
    steps of the backtrack samples whose prefix ends there are taken and taken back. A
    backtrack sample whose prefix is not a prefix of that solution is left out (counted in
    ``unmatched``), as are further solution samples (``extra_solutions``) and repeated wrong
    steps. A long search (``<backtrack>`` lines and ``Goal Reached!``) stays one search.
    """
    groups: dict[str, dict] = {}
    out: list[tuple] = []
    counts = {"solution_samples": 0, "backtrack_samples": 0, "searches": 0, "unmatched": 0,
              "extra_solutions": 0, "backtrack_only": 0}
    for where, obj in items:
        try:
            if isinstance(obj, ConversionError):
                raise obj
            puzzle, text = _sb_item(obj)
            lines = _sb_lines(text)
            if SB_GOAL in lines:
                lines = lines[:lines.index(SB_GOAL) + 1]
            backs = sum(SB_BACKTRACK in line for line in lines)
            if backs and not (backs == 1 and lines[-1] == SB_BACKTRACK):
                counts["searches"] += 1
                out.append(("search", where, obj))
                continue
            if not lines or lines[-1] not in (SB_GOAL, SB_BACKTRACK):
                raise ConversionError("neither a solution sample (steps, then 'Goal Reached!') nor a "
                                      "backtrack sample (steps, then '<backtrack>')")
            moves = _sb_moves(puzzle, lines[:-1])
            key = countdown.puzzle_key(puzzle)
            if key not in groups:
                groups[key] = {"puzzle": puzzle, "solution": None, "wrong": []}
                out.append(("group", key, None))
            g = groups[key]
            if lines[-1] == SB_GOAL:
                counts["solution_samples"] += 1
                if g["solution"] is None:
                    g["solution"] = moves
                else:
                    counts["extra_solutions"] += 1
            else:
                counts["backtrack_samples"] += 1
                g["wrong"].append(moves)
        except ConversionError as e:
            out.append(("error", where, e))
    results: list[tuple] = []
    for kind, key, obj in out:
        if kind == "error":
            results.append((key, obj))
        elif kind == "search":
            try:
                results.append(from_self_backtracking_search(obj))
            except NoGoal as e:
                results.append((e.puzzle, None, "no_goal"))
            except ConversionError as e:
                results.append((key, e))
        else:
            g = groups[key]
            if g["solution"] is None:
                counts["backtrack_only"] += 1
                results.append((g["puzzle"], None, "no_goal"))
                continue
            results.append((g["puzzle"], _grouped_search(g, counts)))
    return results, counts


def _grouped_search(g: dict, counts: dict) -> list[Event]:
    solution = g["solution"]
    wrong: list[list[tuple]] = [[] for _ in solution]
    for sample in g["wrong"]:
        *prefix, step = sample
        if len(prefix) >= len(solution) or not all(_same_move(x, y) for x, y in zip(prefix, solution)):
            counts["unmatched"] += 1
        elif step[3] == g["puzzle"]["target"] and len(prefix) == len(solution) - 1:
            counts["unmatched"] += 1  # it reaches the target: not a wrong step
        elif not any(_same_move(step, w) for w in wrong[len(prefix)]):
            wrong[len(prefix)].append(step)
    search = _Search(g["puzzle"])
    for depth, move in enumerate(solution):
        for w in wrong[depth]:
            search.step(*w)
            search.back(1)
        search.step(*move)
    return search.finish()
