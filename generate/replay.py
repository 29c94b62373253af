"""Another project's Countdown moves replayed as this project's events, each move checked:
what reading Self-Backtracking and Stream of Search data (``generate.interop``) shares, and
the errors a search that cannot be converted raises."""

from __future__ import annotations

from typing import Any, Optional

from solvers import countdown
from solvers.trace import Answer, Backtrack, Event, Step


class ConversionError(ValueError):
    """A search that cannot become events; the message says which line and why."""


class NoGoal(ConversionError):
    """A well-formed search that never reaches the goal: counted as ``no_goal``, not an error."""

    def __init__(self, message: str, puzzle: Optional[dict] = None) -> None:
        super().__init__(message)
        self.puzzle = puzzle


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
