"""Countdown searches in other projects' layouts, out and in: the registry of layouts and the
entry points. Each layout's own code is in ``generate.self_backtracking`` (layouts
``self_backtracking``, ``self_backtracking_search``) and ``generate.stream_of_search``
(``stream_of_search``); what reading both shares is in ``generate.replay``.

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
import random
from pathlib import Path
from typing import Any, Iterator

# Besides what this module uses, the layouts' public names (and _SB_STEP, which a test reads)
# are imported here so that callers and tests keep naming them generate.interop.X.
from generate.files import utf8_text
from generate.write import atomic_file
from generate.replay import ConversionError, NoGoal
from generate.self_backtracking import (SB_BACKTRACK, SB_GOAL, _SB_STEP, from_self_backtracking_search,  # noqa: F401
                                        read_self_backtracking, to_self_backtracking,
                                        to_self_backtracking_search)
from generate.stream_of_search import (SOS_NO_SOLUTION, from_stream_of_search, sos_nodes,  # noqa: F401
                                       to_stream_of_search)
from solvers import TASKS, countdown
from solvers.config import ConfigError
from solvers.trace import Event

LAYOUTS = ("seed", "self_backtracking", "self_backtracking_search", "stream_of_search")
EXTERNAL_TASKS = tuple(name for name, task in TASKS.items() if task.LAYOUTS)  # the tasks they describe


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
    with atomic_file(path) as f:
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
    return {"list_file": path.name, "rows": rows}


# ----------------------------------------------------------------------------- import

READERS = {"self_backtracking_search": from_self_backtracking_search, "stream_of_search": from_stream_of_search}


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, object) for each item of a JSON list, one JSON object, or JSON lines."""
    text = utf8_text(path, "traces")
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
