"""Countdown searches in other projects' layouts, out and in.

- **Self-Backtracking** (Yang et al., 2025; LAMDASZ-ML/Self-Backtracking), layout
  ``self_backtracking``: rows ``{"nums", "target", "search_path"}`` of two kinds. A
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
- ``self_backtracking_search``: this project's earlier layout of one long search per
  puzzle, ``<backtrack>`` lines inside it and ``Goal Reached!`` at the end.
- **Stream of Search** (Gandhi et al., 2024; kanishkg/stream-of-search), layout
  ``stream_of_search``: ``{"nums", "target", "solution", "search_path", "rating",
  "search_type", "optimal_path", "heuristic"}`` where ``search_path`` narrates the search:
  ``Current State: 39:[68, 23, 38], Operations: []``, ``Exploring Operation: 68-38=30,
  Resulting Numbers: [23, 30]``, ``Generated Node #0,0: ...``, ``Moving to Node #0,0``, and
  ``39,39 equal: Goal Reached`` (or ``unequal: No Solution``) after a last move.

``export(layout, record, events, config)`` writes a record in one of them (``python -m
generate layout=...``; a list of rows for self_backtracking); every split is also written as
one JSON list, ``OUT/<split>.json``, as their generator writes ``train.json``.
``read_traces(file, layout)`` reads a file in one of them (a JSON list, one JSON object, or
JSON lines) and turns each search into this project's events. A search that cannot be
converted (a false step, a number that is not there) is an error naming the file, the item
and the line of the search path; one that never reaches the goal is counted (``no_goal``).
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from solvers import TASKS, countdown
from solvers.config import ConfigError
from solvers.trace import Answer, Backtrack, Event, Step

LAYOUTS = ("seed", "self_backtracking", "self_backtracking_search", "stream_of_search")
EXTERNAL_TASKS = tuple(name for name, task in TASKS.items() if task.LAYOUTS)  # the tasks they describe

SB_BACKTRACK = "<backtrack>"
SB_GOAL = "Goal Reached!"


class ConversionError(ValueError):
    """A search that cannot become events; the message says which line and why."""


class NoGoal(ConversionError):
    """A well-formed search that never reaches the goal: counted as ``no_goal``, not an error."""

    def __init__(self, message: str, puzzle: Optional[dict] = None) -> None:
        super().__init__(message)
        self.puzzle = puzzle


def _ops(a: int, op: str, b: int, spaced: bool) -> str:
    return f"{a} {op} {b}" if spaced else f"{a}{op}{b}"


def _move(data: dict, spaced: bool) -> str:
    return f"{_ops(data['a'], data['op'], data['b'], spaced)}{' = ' if spaced else '='}{data['result']}"


# ----------------------------------------------------------------------------- export

def export(layout: str, record: dict, events: list[Event], config: Any = None) -> Any:
    """A validated Countdown record in ``layout`` (``config``: the task config it was
    solved with); a list of rows for ``self_backtracking``."""
    config = config if config is not None else countdown.Config()
    if layout == "self_backtracking":
        rng = random.Random(f"self_backtracking/{record.get('id') or countdown.puzzle_key(record['puzzle'])}")
        return to_self_backtracking(record["puzzle"], events, config.sb_backtrack_samples,
                                    config.sb_backtrack_ratio, rng)
    if layout == "self_backtracking_search":
        return to_self_backtracking_search(record["puzzle"], events)
    if layout == "stream_of_search":
        return to_stream_of_search(record["puzzle"], events, config.heuristic)
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS[1:])}; got {layout!r}")


def rows(record_json: str) -> list[str]:
    """The rows a written record makes: one, or one per sample when ``export`` gave a list."""
    if not record_json.startswith("["):
        return [record_json]
    return [json.dumps(row, ensure_ascii=False) for row in json.loads(record_json)]


def write_list_file(out: Path, split: str, shards: list[str]) -> dict:
    """``OUT/<split>.json``: every row of a split's shards as one JSON list, the way Stream of
    Search's generator writes ``train.json`` and both projects' evaluations read a split
    (``json.load``). Streamed, written to a temporary file and renamed."""
    path = out / f"{split}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("[")
        first, rows = True, 0
        for shard in shards:
            with open(out / shard, encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        f.write(("\n" if first else ",\n") + line.rstrip("\n"))
                        first = False
                        rows += 1
        f.write("\n]\n")
    tmp.replace(path)
    return {"list_file": path.name, "rows": rows}


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


# ----------------------------------------------------------------------------- import

def _move_key(a: int, op: str, b: int, result: int) -> str:
    """A move's name, the same whichever way round + and * name their numbers."""
    if op in "+*" and a < b:
        a, b = b, a
    return f"{a}{op}{b}={result}"


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
        if op in "+*" and a < b:  # the larger first, as this project's solver writes a move
            a, b = b, a
        true = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
        if true is None:
            raise ConversionError(f"{a} / {b} is not a whole number")
        if true != result:
            raise ConversionError(f"{a} {op} {b} is {true}, not {result}")
        if result < 0:
            raise ConversionError(f"{a} {op} {b} = {result}: results must not be negative")
        for n in (a, b):
            if n not in nums:
                raise ConversionError(f"{a} {op} {b}: {n} is not among the numbers left {nums}")
            nums.remove(n)
        left = sorted(nums + [result])
        final = len(left) == 1 and result == self.target
        self.events.append(Step({"a": a, "op": op, "b": b, "result": result,
                                 "left": [] if final else left, "final": final}))
        self.live.append((_move_key(a, op, b, result), left))

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
            raise NoGoal(f"the search ends at {self.now()}, not at the target {self.target}: "
                         "it never reaches the goal", {"numbers": self.numbers, "target": self.target})
        moves = []
        for e in self.events:  # the moves of the path that survived
            if isinstance(e, Step):
                moves.append((e.data["a"], e.data["op"], e.data["b"]))
            elif isinstance(e, Backtrack):
                del moves[len(moves) - e.k:]
        return self.events + [Answer(countdown.answer_expression(self.numbers, moves))]


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


READERS = {"self_backtracking_search": from_self_backtracking_search, "stream_of_search": from_stream_of_search}


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


def read_traces(path: Path, layout: str, skip_bad: bool = False) -> list[tuple]:
    """Every search of a file, converted: ``(puzzle, events)`` per search in file order (per
    puzzle for ``self_backtracking``, whose samples are grouped), or ``(puzzle, None,
    "no_goal")`` for one that never reaches the goal.

    A search that cannot be converted stops the run with a ConfigError naming the file, the
    item or line, and the line of its search path; with ``skip_bad`` it becomes
    ``(None, None)`` (counted as ``unconvertible`` in the manifest) and the first few are
    printed.
    """
    if layout == "self_backtracking":
        results, counts = read_self_backtracking(list(_items(path)))
        print(f"{path}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    else:
        read = READERS[layout]
        results = []
        for where, obj in _items(path):
            try:
                if isinstance(obj, ConversionError):
                    raise obj
                results.append(read(obj))
            except NoGoal as e:
                results.append((e.puzzle, None, "no_goal"))
            except ConversionError as e:
                results.append((where, e))
    out: list[tuple] = []
    bad = 0
    for result in results:
        if not isinstance(result[1], ConversionError):
            out.append(result)
            continue
        message = f"{path}: {result[0]}: {result[1]}"
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
