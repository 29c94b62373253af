"""Stream of Search's layout (Gandhi et al., 2024; kanishkg/stream-of-search), out and in.

Layout ``stream_of_search``: ``{"nums", "target", "solution", "search_path", "rating",
"search_type", "optimal_path", "heuristic"}`` where ``search_path`` narrates the search:
``Current State: 39:[68, 23, 38], Operations: []``, ``Exploring Operation: 68-38=30,
Resulting Numbers: [23, 30]``, ``Generated Node #0,0: ...``, ``Moving to Node #0,0``, and
``39,39 equal: Goal Reached`` (or ``unequal: No Solution``) after a last move.

``generate.interop`` holds the registry of layouts and the entry points (``export``, ``read_traces``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterator

from generate.replay import ConversionError, NoGoal, _move_key, _puzzle, _Search
from solvers import countdown
from solvers.trace import Answer, Backtrack, Event, Step  # noqa: F401 (Answer: the doctests' events)


def _max_nodes(n: int) -> int:
    # Stream of Search's rating divides by the full tree's size: C(m, 2) pairs x 4 operations
    # per level, from n numbers down to 2: 48 for 3 numbers, 1152 for 4, 46080 for 5.
    return math.prod(math.comb(m, 2) * 4 for m in range(2, n + 1))


def _sos_move(nums: list[int], d: dict) -> tuple[str, list[int]]:
    """A move as Stream of Search writes it, on numbers kept in their order: + and * name the
    two numbers in the order they stand, - and / the larger first; the result is appended
    to the numbers left (their ``combine_nums``)."""
    i = nums.index(d["a"])
    j = next(k for k, v in enumerate(nums) if v == d["b"] and k != i)
    x, y = (d["a"], d["b"]) if i < j or d["op"] in "-/" else (d["b"], d["a"])
    return f"{x}{d['op']}{y}={d['result']}", [v for k, v in enumerate(nums) if k not in (i, j)] + [d["result"]]


def _sos_optimal_path(target: int, numbers: list[int], steps: list[Step]) -> str:
    """The solution narrated as their ``CountDown.convert_to_path`` writes ``optimal_path``."""
    nums, done = list(numbers), []
    text = f"Current State: {target}:{nums}, Operations: {done}\n"
    node = 1
    for step in steps:
        op, nums = _sos_move(nums, step.data)
        text += f"Exploring Operation: {op}, Resulting Numbers: {nums}\n"
        if len(nums) == 1:
            text += f"{nums[0]},{target} equal: Goal Reached\n"
        else:
            node += 1
            text += f"Generated Node #{node}: {nums} from Operation: {op}\n"
            done.append(op)
            text += f"Current State: {target}:{nums}, Operations: {done}\n"
    return text


def to_stream_of_search(puzzle: dict, events: list[Event], heuristic: str = "") -> dict:
    """A record as Stream of Search writes its DFS data: the search narrated node by node,
    the numbers left in their order with each result appended.

    >>> ev = [Step({"a": 5, "op": "+", "b": 3, "result": 8, "left": [2, 8], "final": False}),
    ...       Backtrack(1, {"left": [2, 3, 5]}),
    ...       Step({"a": 5, "op": "*", "b": 2, "result": 10, "left": [3, 10], "final": False}),
    ...       Step({"a": 10, "op": "+", "b": 3, "result": 13, "left": [], "final": True}), Answer("5 * 2 + 3")]
    >>> print(to_stream_of_search({"numbers": [5, 3, 2], "target": 13}, ev)["search_path"], end="")
    Current State: 13:[5, 3, 2], Operations: []
    Exploring Operation: 5+3=8, Resulting Numbers: [2, 8]
    Generated Node #0,0: 13:[2, 8] Operation: 5+3=8
    Moving to Node #0,0
    Current State: 13:[2, 8], Operations: ['5+3=8']
    Moving to Node #0
    Current State: 13:[5, 3, 2], Operations: []
    Exploring Operation: 5*2=10, Resulting Numbers: [3, 10]
    Generated Node #0,1: 13:[3, 10] Operation: 5*2=10
    Moving to Node #0,1
    Current State: 13:[3, 10], Operations: ['5*2=10']
    Exploring Operation: 3+10=13, Resulting Numbers: [13]
    13,13 equal: Goal Reached
    """
    target = puzzle["target"]
    lines = [f"Current State: {target}:{list(puzzle['numbers'])}, Operations: []"]
    # one frame per live node: [node id, numbers in order, operations so far, children explored]
    stack: list[list[Any]] = [["0", list(puzzle["numbers"]), [], 0]]
    explored = 0
    for event in events:
        if isinstance(event, Step):
            node, nums, ops, children = stack[-1]
            op, left = _sos_move(nums, event.data)
            explored += 1
            if event.data.get("final"):
                lines.append(f"Exploring Operation: {op}, Resulting Numbers: {left}")
                lines.append(f"{left[0]},{target} equal: Goal Reached")
                continue
            child = f"{node},{children}"
            stack[-1][3] += 1
            lines += [f"Exploring Operation: {op}, Resulting Numbers: {left}",
                      f"Generated Node #{child}: {target}:{left} Operation: {op}",
                      f"Moving to Node #{child}",
                      f"Current State: {target}:{left}, Operations: {ops + [op]}"]
            stack.append([child, left, ops + [op], 0])
        elif isinstance(event, Backtrack):
            del stack[len(stack) - event.k:]
            node, nums, ops, _ = stack[-1]
            lines += [f"Moving to Node #{node}", f"Current State: {target}:{nums}, Operations: {ops}"]
    kept = list(_kept_steps(events))
    nums, solution = list(puzzle["numbers"]), []
    for step in kept:
        op, nums = _sos_move(nums, step.data)
        solution.append(op)
    return {
        "nums": list(puzzle["numbers"]), "target": target, "solution": solution,
        "search_path": "\n".join(lines) + "\n",
        "rating": max(0.0, 1.0 - (explored + 1) / _max_nodes(len(puzzle["numbers"]))),
        "search_type": "dfs", "heuristic": countdown.SOS_HEURISTICS.get(heuristic, heuristic),
        "optimal_path": _sos_optimal_path(target, list(puzzle["numbers"]), kept),
    }


def _kept_steps(events: list[Event]) -> Iterator[Step]:
    live: list[Step] = []
    for e in events:
        if isinstance(e, Step):
            live.append(e)
        elif isinstance(e, Backtrack):
            del live[len(live) - e.k:]
    return iter(live)


_SOS_STATE = re.compile(r"^Current State: (\d+):\[([\d, ]*)\], Operations: \[(.*)\]$")
_SOS_EXPLORE = re.compile(r"^Exploring Operation: (\d+)([-+*/])(\d+)=(\d+), Resulting Numbers: \[([\d, ]*)\]$")
_SOS_LEAF = re.compile(r"^(\d+),(\d+) (equal: Goal Reached|unequal: No Solution)$")
_SOS_IGNORED = ("Generated Node #", "Moving to Node #")
_SOS_OP = re.compile(r"'(\d+)([-+*/])(\d+)=(\d+)'")
SOS_NO_SOLUTION = "No solution found."  # the last line of their breadth-first searches that fail


def sos_nodes(search_path: str) -> dict:
    """How many nodes a Stream of Search search generated and how many it expanded (narrated a
    ``Current State`` for, the root aside). The import follows expanded nodes only: a
    breadth-first search loses ``generated - expanded`` nodes in conversion."""
    lines = search_path.split("\n")
    # a node is known by its Current State line (its operations from the root); two siblings
    # made from equal numbers read the same and count once
    return {"generated": sum(x.startswith("Generated Node #") for x in lines),
            "expanded": len({x for x in lines if x.startswith("Current State:")}) - 1}


def from_stream_of_search(obj: Any) -> tuple[dict, list[Event]]:
    """(puzzle, events) of one Stream of Search item. The narrated path is followed through
    its ``Current State`` lines, each naming the operations from the root: a state that
    shares only a prefix with where the search was is a return (a backtrack), and a last
    move that misses the target is a step taken and taken back. This reads depth-first and
    breadth-first searches alike.

    >>> p, ev = from_stream_of_search(to_stream_of_search({"numbers": [5, 3, 2], "target": 13},
    ...     [Step({"a": 5, "op": "*", "b": 2, "result": 10, "left": [3, 10], "final": False}),
    ...      Step({"a": 10, "op": "+", "b": 3, "result": 13, "left": [], "final": True}), Answer("5 * 2 + 3")]))
    >>> ev[-1].value
    '5 * 2 + 3'
    """
    puzzle = _puzzle(obj)
    path = obj.get("search_path")
    if not isinstance(path, str):
        raise ConversionError("'search_path' must be a string")
    search = _Search(puzzle)
    lines = path.replace("<|endoftext|>", "").split("\n")
    for n, line in enumerate(lines, 1):
        line = line.strip()
        try:
            if not line or line.startswith(_SOS_IGNORED):
                continue
            m = _SOS_STATE.match(line)
            if m:
                if int(m[1]) != search.target:
                    raise ConversionError(f"target {m[1]} is not the puzzle's {search.target}")
                ops = [(int(a), op, int(b), int(r)) for a, op, b, r in _SOS_OP.findall(m[3])]
                moves = [_move_key(int(a), op, int(b), int(r)) for a, op, b, r in ops]
                common = 0
                while common < min(len(moves), len(search.live)) and search.live[common][0] == moves[common]:
                    common += 1
                if common < len(search.live):
                    search.back(len(search.live) - common)
                for move in ops[common:]:
                    search.step(*move)
                nums = sorted(int(x) for x in m[2].split(",") if x.strip())
                if nums != sorted(search.now()):
                    raise ConversionError(f"the state lists {nums} but its operations leave {sorted(search.now())}")
                continue
            m = _SOS_EXPLORE.match(line)
            if m:
                if len([x for x in m[5].split(",") if x.strip()]) == 1:  # a last move: judged on the next line
                    search.step(int(m[1]), m[2], int(m[3]), int(m[4]))
                    verdict = _SOS_LEAF.match(lines[n].strip()) if n < len(lines) else None
                    if verdict is None:
                        raise ConversionError("a last move must be followed by '... equal: Goal Reached' "
                                              "or '... unequal: No Solution'")
                    if verdict[3].startswith("equal"):
                        return puzzle, search.finish()
                    search.back(1)
                continue
            if _SOS_LEAF.match(line):
                continue
            if line == SOS_NO_SOLUTION:
                raise NoGoal("'No solution found.': the search never reaches the goal", puzzle)
            raise ConversionError("not a Stream of Search line (Current State, Exploring Operation, "
                                  "Generated Node, Moving to Node, equal/unequal)")
        except NoGoal:
            raise
        except ConversionError as e:
            raise ConversionError(f"search_path line {n} ({line[:60]!r}): {e}") from None
    raise NoGoal("the search never reaches 'Goal Reached'", puzzle)
