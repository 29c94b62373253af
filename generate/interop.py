"""Countdown searches in other projects' layouts, out and in.

Two public datasets hold Countdown searches that can be re-rendered with real backspaces
instead of regenerated:

- **Self-Backtracking** (Yang et al., 2025): ``{"nums": [...], "target": T, "search_path": ...}``
  where ``search_path`` has one step per line (``"68 - 38 = 30"``), a ``<backtrack>`` line
  for each step taken back, and ``Goal Reached!`` at the end.
- **Stream of Search** (Gandhi et al., 2024): ``{"nums", "target", "solution", "search_path",
  "rating", "search_type", "optimal_path", "heuristic"}`` where ``search_path`` narrates the
  search: ``Current State: 39:[68, 23, 38], Operations: []``, ``Exploring Operation:
  68-38=30, Resulting Numbers: [23, 30]``, ``Generated Node #0,0: ...``, ``Moving to Node
  #0,0``, and ``39,39 equal: Goal Reached`` (or ``unequal: No Solution``) after a last move.

``export(layout, record, events)`` writes a record in one of them (``python -m generate
layout=...``); ``read_traces(file, layout)`` reads a file in one of them (a JSON list, one
JSON object, or JSON lines) and turns each search into this project's events, so that it
renders in every style (``python -m generate traces=FILE traces_layout=...``). A search that
cannot be converted (a false step, a number that is not there, no solution reached) is an
error naming the file, the item and the line of the search path.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from solvers import TASKS, countdown
from solvers.config import ConfigError
from solvers.trace import Answer, Backtrack, Event, Step

LAYOUTS = ("seed", "self_backtracking", "stream_of_search")
EXTERNAL_TASKS = tuple(name for name, task in TASKS.items() if task.LAYOUTS)  # the tasks they describe

SB_BACKTRACK = "<backtrack>"
SB_GOAL = "Goal Reached!"


class ConversionError(ValueError):
    """A search that cannot become events; the message says which line and why."""


def _ops(a: int, op: str, b: int, spaced: bool) -> str:
    return f"{a} {op} {b}" if spaced else f"{a}{op}{b}"


def _move(data: dict, spaced: bool) -> str:
    return f"{_ops(data['a'], data['op'], data['b'], spaced)}{' = ' if spaced else '='}{data['result']}"


# ----------------------------------------------------------------------------- export

def export(layout: str, record: dict, events: list[Event], heuristic: str = "") -> dict:
    """A validated Countdown record in ``layout``."""
    if layout == "self_backtracking":
        return to_self_backtracking(record["puzzle"], events)
    if layout == "stream_of_search":
        return to_stream_of_search(record["puzzle"], events, heuristic)
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS[1:])}; got {layout!r}")


def to_self_backtracking(puzzle: dict, events: list[Event]) -> dict:
    """A record as Self-Backtracking's data has it: one step per line, ``<backtrack>`` lines.

    >>> ev = [Step({"a": 5, "op": "+", "b": 3, "result": 8, "left": [8, 2], "final": False}),
    ...       Backtrack(1), Step({"a": 5, "op": "*", "b": 2, "result": 10, "left": [3, 10], "final": False}),
    ...       Step({"a": 10, "op": "+", "b": 3, "result": 13, "left": [], "final": True}), Answer("5 * 2 + 3")]
    >>> print(to_self_backtracking({"numbers": [5, 3, 2], "target": 13}, ev)["search_path"])
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


def _max_nodes(n: int) -> int:
    # Stream of Search's rating divides by the full tree's size: C(m, 2) pairs x 4 operations
    # per level, from n numbers down to 2: 48 for 3 numbers, 1152 for 4, 46080 for 5.
    return math.prod(math.comb(m, 2) * 4 for m in range(2, n + 1))


def to_stream_of_search(puzzle: dict, events: list[Event], heuristic: str = "") -> dict:
    """A record as Stream of Search writes its DFS data: the search narrated node by node.

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
    Exploring Operation: 10+3=13, Resulting Numbers: [13]
    13,13 equal: Goal Reached
    """
    target = puzzle["target"]
    lines = [f"Current State: {target}:{list(puzzle['numbers'])}, Operations: []"]
    # one frame per live node: [node id, numbers, operations so far, children explored]
    stack: list[list[Any]] = [["0", list(puzzle["numbers"]), [], 0]]
    explored = 0
    for event in events:
        if isinstance(event, Step):
            d = event.data
            op = _move(d, spaced=False)
            node, _, ops, children = stack[-1]
            explored += 1
            if d.get("final"):
                lines.append(f"Exploring Operation: {op}, Resulting Numbers: [{d['result']}]")
                lines.append(f"{d['result']},{target} equal: Goal Reached")
                continue
            child = f"{node},{children}"
            stack[-1][3] += 1
            lines += [f"Exploring Operation: {op}, Resulting Numbers: {d['left']}",
                      f"Generated Node #{child}: {target}:{d['left']} Operation: {op}",
                      f"Moving to Node #{child}",
                      f"Current State: {target}:{d['left']}, Operations: {ops + [op]}"]
            stack.append([child, list(d["left"]), ops + [op], 0])
        elif isinstance(event, Backtrack):
            del stack[len(stack) - event.k:]
            node, nums, ops, _ = stack[-1]
            lines += [f"Moving to Node #{node}", f"Current State: {target}:{nums}, Operations: {ops}"]
    solution = [_move(e.data, spaced=False) for e in _kept_steps(events)]
    return {
        "nums": list(puzzle["numbers"]), "target": target, "solution": solution,
        "search_path": "\n".join(lines) + "\n",
        "rating": max(0.0, 1.0 - (explored + 1) / _max_nodes(len(puzzle["numbers"]))),
        "search_type": "dfs", "heuristic": heuristic,
        "optimal_path": to_stream_of_search(puzzle, list(_kept_steps(events)) + [events[-1]], heuristic)["search_path"]
        if any(isinstance(e, Backtrack) for e in events) else "\n".join(lines) + "\n",
    }


def _kept_steps(events: list[Event]) -> Iterator[Step]:
    live: list[Step] = []
    for e in events:
        if isinstance(e, Step):
            live.append(e)
        elif isinstance(e, Backtrack):
            del live[len(live) - e.k:]
    return iter(live)


# ----------------------------------------------------------------------------- import

class _Search:
    """Replays moves on a Countdown puzzle, checking each one, and records events."""

    def __init__(self, puzzle: dict) -> None:
        self.target = puzzle["target"]
        self.numbers = list(puzzle["numbers"])
        self.events: list[Event] = []
        self.live: list[tuple[str, list[int]]] = []  # (move, numbers after it)

    def now(self) -> list[int]:
        return list(self.live[-1][1]) if self.live else list(self.numbers)

    def step(self, a: int, op: str, b: int, result: int) -> None:
        nums = self.now()
        true = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
        if true is None:
            raise ConversionError(f"{a} / {b} is not a whole number")
        if true != result:
            raise ConversionError(f"{a} {op} {b} is {true}, not {result}")
        if result <= 0:
            raise ConversionError(f"{a} {op} {b} = {result}: intermediate results must be positive")
        for n in (a, b):
            if n not in nums:
                raise ConversionError(f"{a} {op} {b}: {n} is not among the numbers left {nums}")
            nums.remove(n)
        left = sorted(nums + [result])
        final = len(left) == 1 and result == self.target
        self.events.append(Step({"a": a, "op": op, "b": b, "result": result,
                                 "left": [] if final else left, "final": final}))
        self.live.append((f"{a}{op}{b}={result}", left))

    def back(self, k: int = 1) -> None:
        if k > len(self.live):
            raise ConversionError(f"takes back {k} step(s) but only {len(self.live)} are live")
        del self.live[len(self.live) - k:]
        state = {"left": sorted(self.now())}
        if self.events and isinstance(self.events[-1], Backtrack):
            k += self.events.pop().k
        self.events.append(Backtrack(k, state))

    def finish(self) -> list[Event]:
        if not self.live or self.live[-1][1] != [self.target]:
            raise ConversionError(f"the search ends at {self.now()}, not at the target {self.target}: "
                                  "it holds no solution to convert")
        moves = []
        for e in self.events:  # the moves of the path that survived
            if isinstance(e, Step):
                moves.append((e.data["a"], e.data["op"], e.data["b"]))
            elif isinstance(e, Backtrack):
                del moves[len(moves) - e.k:]
        return self.events + [Answer(countdown.answer_expression(self.numbers, moves))]


_SB_STEP = re.compile(r"^(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*((?:<backtrack>\s*)*)$")


def from_self_backtracking(obj: Any) -> tuple[dict, list[Event]]:
    """(puzzle, events) of one Self-Backtracking item.

    >>> p, ev = from_self_backtracking({"nums": [5, 3, 2], "target": 13,
    ...     "search_path": "5 + 3 = 8\\n<backtrack>\\n5 * 2 = 10\\n10 + 3 = 13\\nGoal Reached!"})
    >>> [type(e).__name__ for e in ev], ev[-1].value
    (['Step', 'Backtrack', 'Step', 'Step', 'Answer'], '5 * 2 + 3')
    """
    puzzle = _puzzle(obj)
    path = obj.get("search_path")
    if not isinstance(path, str):
        raise ConversionError("'search_path' must be a string")
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


_SOS_STATE = re.compile(r"^Current State: (\d+):\[([\d, ]*)\], Operations: \[(.*)\]$")
_SOS_EXPLORE = re.compile(r"^Exploring Operation: (\d+)([-+*/])(\d+)=(\d+), Resulting Numbers: \[([\d, ]*)\]$")
_SOS_LEAF = re.compile(r"^(\d+),(\d+) (equal: Goal Reached|unequal: No Solution)$")
_SOS_IGNORED = ("Generated Node #", "Moving to Node #")
_SOS_OP = re.compile(r"'(\d+)([-+*/])(\d+)=(\d+)'")


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
                moves = [f"{a}{op}{b}={r}" for a, op, b, r in ops]
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
            raise ConversionError("not a Stream of Search line (Current State, Exploring Operation, "
                                  "Generated Node, Moving to Node, equal/unequal)")
        except ConversionError as e:
            raise ConversionError(f"search_path line {n} ({line[:60]!r}): {e}") from None
    raise ConversionError("the search never reaches 'Goal Reached': it holds no solution to convert")


def _puzzle(obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise ConversionError(f"expected an object with nums, target and search_path; got {type(obj).__name__}")
    for key in ("nums", "target", "search_path"):
        if key not in obj:
            raise ConversionError(f"missing field '{key}'")
    try:
        return countdown.parse_puzzle({"numbers": obj["nums"], "target": obj["target"]})
    except ValueError as e:
        raise ConversionError(str(e).replace("'numbers'", "'nums'")) from None


READERS = {"self_backtracking": from_self_backtracking, "stream_of_search": from_stream_of_search}


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, object) for each item of a JSON list, one JSON object, or JSON lines."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, list):
        for i, obj in enumerate(data):
            yield f"item {i}", obj
        return
    if isinstance(data, dict):
        yield "item 0", data
        return
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as e:
            yield f"line {lineno}", ConversionError(f"not valid JSON ({e.msg})")


def read_traces(path: Path, layout: str, skip_bad: bool = False) -> list[tuple[Optional[dict], Optional[list]]]:
    """Every search of a file, converted: (puzzle, events) per item, in file order.

    A search that cannot be converted stops the run with a ConfigError naming the file, the
    item or line, and the line of its search path; with ``skip_bad`` it becomes
    ``(None, None)`` (counted as ``unconvertible`` in the manifest) and the first few are
    printed.
    """
    read = READERS[layout]
    out: list[tuple[Optional[dict], Optional[list]]] = []
    bad = 0
    for where, obj in _items(path):
        try:
            if isinstance(obj, ConversionError):
                raise obj
            out.append(read(obj))
        except ConversionError as e:
            message = f"{path}: {where}: {e}"
            if not skip_bad:
                raise ConfigError("traces", message) from None
            bad += 1
            if bad <= 5:
                print(f"skipped: {message}")
            out.append((None, None))
    if not out:
        raise ConfigError("traces", f"{path}: holds no searches")
    if bad > 5:
        print(f"skipped {bad} searches in all that could not be converted")
    return out
