"""The Task contract: everything the rest of the project may ask of a task, declared once.

A task is one module (``solvers/countdown.py`` and its siblings). ``register(module)`` reads
the module's parts into a ``Task``, fills the optional ones with their defaults and refuses a
module that lacks a required part or declares an optional one wrongly, naming the part. The
generator, validator, recorder, rewards, evaluation, rejudge and the external layouts read
these fields; none of them tests a task's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

ANSWER_KINDS = ("int", "text")


@dataclass(frozen=True)
class Tool:
    """A tool the model may call during evaluation (``eval.tool_loop``): generation stops when
    the model writes ``close`` on a line of its own, ``pending(completion)`` reads what to run
    (None: nothing), and ``run(code, timeout)`` is the text inserted after it."""

    close: str
    pending: Callable[[str], Optional[str]]
    run: Callable[[str, float], str]


@dataclass(frozen=True)
class Task:
    # ---- required: the module must define each of these
    NAME: str
    HEURISTICS: tuple              # search orders; the first is Config's default
    Config: type                   # a dataclass that validates itself (raises ConfigError naming the key)
    sample: Callable               # (config, rng) -> puzzle
    solve: Callable                # (puzzle, config, rng) -> events or None
    verify: Callable               # (puzzle, answer) -> bool
    question: Callable             # puzzle -> the Question text
    puzzle_key: Callable           # puzzle -> a canonical string (splits, duplicates)
    parse_puzzle: Callable         # a JSON object -> puzzle, or ValueError naming the field
    is_heldout: Callable           # (puzzle, config) -> bool
    step_phrases: Callable         # wording of a step, its slots, the back and note lines
    step_slots: Callable
    BACK_PHRASES: tuple
    back_slots: Callable
    NOTE_PHRASES: tuple
    note_slots: Callable
    # ---- optional: defaults below
    ANSWER_KIND: str = "int"       # "int": the seed format's integer Answer; "text": an expression, a path, a grid
    PROPOSES: bool = False         # solve() takes propose=... (an LLM proposes the steps); no sampler of its own
    RECORDABLE: bool = True        # the recorder (generate.record) may draw its puzzles for a person to answer
    REASONS: tuple = ()            # its own validator rejection reasons (returned by check_page)
    check_page: Optional[Callable] = None   # (puzzle, collapsed page) -> a reason in REASONS, or None
    solve_given: Optional[Callable] = None  # (puzzle, config, rng) -> (events or None, reason): a given puzzle
    record_stats: Optional[Callable] = None  # events -> what a record's stats add (countdown: dead_ends)
    REWARDS: dict = field(default_factory=dict)  # name -> (collapsed page, puzzle) -> float, for GRPO
    GRPO_REWARDS: tuple = ()       # ((reward name, weight), ...) used when grpo.task_rewards names none
    TOOL: Optional[Tool] = None    # what eval.tool_loop runs
    CHECKER: Optional[Callable] = None  # (puzzle, raw completion, data.format) -> bool: rejudge's independent check
    LAYOUTS: tuple = ()            # other projects' layouts it can be written in and imported from
    module: Optional[ModuleType] = None  # where it came from: its wording and helpers live there


REQUIRED = tuple(f.name for f in dataclasses.fields(Task)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
OPTIONAL = tuple(f.name for f in dataclasses.fields(Task) if f.name not in REQUIRED and f.name != "module")


class TaskError(TypeError):
    """A task module that breaks the contract; the message names the module and the part."""


def register(module: ModuleType, registry: Optional[dict] = None) -> Task:
    """Read ``module`` into a checked ``Task`` (and add it to ``registry`` under its NAME).

    >>> import types
    >>> register(types.SimpleNamespace(__name__="half", NAME="half"))
    Traceback (most recent call last):
    ...
    solvers.task.TaskError: task module half lacks HEURISTICS (required parts: NAME, HEURISTICS, Config, ...)
    """
    where = getattr(module, "__name__", repr(module))
    missing = [part for part in REQUIRED if not hasattr(module, part)]
    if missing:
        raise TaskError(f"task module {where} lacks {missing[0]} (required parts: {', '.join(REQUIRED[:3])}, ...)")
    parts: dict[str, Any] = {part: getattr(module, part) for part in REQUIRED + OPTIONAL if hasattr(module, part)}
    task = Task(**parts, module=module)
    _check(task, where)
    if registry is not None:
        if task.NAME in registry:
            raise TaskError(f"task module {where}: a task named {task.NAME!r} is registered already")
        registry[task.NAME] = task
    return task


def _check(task: Task, where: str) -> None:
    def bad(part: str, why: str) -> TaskError:
        return TaskError(f"task module {where}: {part} {why}")

    if not isinstance(task.NAME, str) or not task.NAME.isidentifier():
        raise bad("NAME", f"must be an identifier, got {task.NAME!r}")
    if not isinstance(task.HEURISTICS, tuple) or not task.HEURISTICS:
        raise bad("HEURISTICS", "must be a non-empty tuple")
    if not dataclasses.is_dataclass(task.Config):
        raise bad("Config", "must be a dataclass")
    for part in ("sample", "solve", "verify", "question", "puzzle_key", "parse_puzzle", "is_heldout",
                 "step_phrases", "step_slots", "back_slots", "note_slots"):
        if not callable(getattr(task, part)):
            raise bad(part, "must be callable")
    if task.ANSWER_KIND not in ANSWER_KINDS:
        raise bad("ANSWER_KIND", f"must be one of {ANSWER_KINDS}, got {task.ANSWER_KIND!r}")
    if task.PROPOSES and task.RECORDABLE:
        raise bad("RECORDABLE", "must be False for a task whose steps an LLM proposes (it has no sampler)")
    if task.REASONS and task.check_page is None:
        raise bad("REASONS", "are returned by check_page, which the module does not define")
    for name, scorer in task.REWARDS.items():
        if not (isinstance(name, str) and callable(scorer)):
            raise bad("REWARDS", "must map reward names to (page, puzzle) -> float functions")
    for pair in task.GRPO_REWARDS:
        if len(pair) != 2 or not isinstance(pair[1], (int, float)):
            raise bad("GRPO_REWARDS", f"must hold (reward name, weight) pairs, got {pair!r}")
    for part in ("check_page", "solve_given", "record_stats", "CHECKER"):
        if getattr(task, part) is not None and not callable(getattr(task, part)):
            raise bad(part, "must be callable")
    if task.TOOL is not None and not isinstance(task.TOOL, Tool):
        raise bad("TOOL", "must be a solvers.task.Tool")
