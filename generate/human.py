"""Human traces: a folder of seed-format JSON files, checked and turned into records.

    python -m generate.human data/human            # report every file: good, or bad and why
    python -m generate.human DIR --out human.jsonl  # and write the good ones as records
    python -m generate human=DIR human_ratio=0.1    # mix them into a generated dataset

A file holds one trace in the format of the person this project is for:

    {"Question": "A simple math question string.", "Answer": <Integer>,
     "Reasoning": "reasoning with any backspaces included, ideally under 2048 characters"}

optionally with ``"task"`` and ``"puzzle"`` (as ``python -m generate.record`` writes them),
which let the task's own verifier check the answer. Each file is checked on its own, and a
bad one is reported with its name and the reason without stopping the others:

==================  ==========================================================================
reason              meaning
==================  ==========================================================================
bad_json            not valid JSON (or not UTF-8)
schema              not an object, a field missing, or a field of the wrong type (``Answer``
                    must be an integer unless the file names a task whose answers are text)
malformed_backspaces more backspaces than there is text before them
missing_answer      the last line of the collapsed Reasoning does not state the Answer
wrong_answer        a checker exists and says the Answer is wrong: the task's verifier, or,
                    for "What is 12 + 7 * 3?"-style questions, exact arithmetic (sympy)
over_length         the Reasoning is longer than the budget (2048 characters by default)
==================  ==========================================================================

A good file becomes a record with the seed fields verbatim and ``source: "human"``. Files
that name no task get ``task: "human"`` and ``puzzle: {"Question", "Answer"}``: rewards and
evaluation then check an answer against the known Answer (``solvers.verifier``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

from solvers import TASKS, HUMAN
from solvers.arith import exact_value
from solvers.trace import BACKSPACE, MalformedTrace, collapse

REASONS = ("bad_json", "schema", "malformed_backspaces", "missing_answer", "wrong_answer", "over_length")

# "What is 12 + 7 * 3?", "Compute (4 + 5) × 6.": one arithmetic expression, checked exactly.
_ARITHMETIC_QUESTION = re.compile(r"^(?:what is|compute|calculate|evaluate)\s+([-+*/×÷()\d\s]+?)\s*[?.]?\s*$",
                                  re.IGNORECASE)


def arithmetic_answer(question: str) -> Optional[int]:
    """The exact value of a "What is <arithmetic>?" question, or None when the question is
    not one (or its value is not an integer).

    >>> arithmetic_answer("What is 12 + 7 * 3?"), arithmetic_answer("What is 7 / 2?"), arithmetic_answer("Why?")
    (33, None, None)
    """
    m = _ARITHMETIC_QUESTION.match(question.strip())
    if not m:
        return None
    value = exact_value(m[1])
    return int(value) if value is not None and value.is_Integer else None


def states_answer(collapsed: str, answer: Any) -> bool:
    """Whether the last non-empty line of the kept text states the answer: "Answer: 42",
    "so it is 42." (as a whole number or text, not inside a longer number). The recorder
    (``generate.record``) asks the same before it saves a trace.

    >>> states_answer("7 * 6 = 42\\nAnswer: 42\\n", 42), states_answer("Answer: 420", 42)
    (True, False)
    """
    lines = [line for line in collapsed.splitlines() if line.strip()]
    if not lines:
        return False
    want = re.escape(str(answer).strip())
    return re.search(rf"(?<![\w.]){want}(?![\w]|\.\d)", lines[-1]) is not None


def check_file(path: Path, max_chars: int = 2048) -> tuple[Optional[dict], Optional[str]]:
    """(record, None) for a good file, (None, "reason: detail") for a bad one."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"bad_json: {e}"
    if not isinstance(obj, dict):
        return None, f"schema: expected a JSON object, got {type(obj).__name__}"
    for name in ("Question", "Answer", "Reasoning"):
        if name not in obj:
            return None, f"schema: missing field '{name}'"
    task_name, puzzle = obj.get("task"), obj.get("puzzle")
    task = TASKS.get(task_name) if task_name not in (None, HUMAN) else None
    if task_name not in (None, HUMAN) and task is None:
        return None, f"schema: unknown task {task_name!r}; known: {', '.join(TASKS)}"
    if not isinstance(obj["Question"], str) or not obj["Question"].strip():
        return None, "schema: 'Question' must be a non-empty string"
    if not isinstance(obj["Reasoning"], str):
        return None, "schema: 'Reasoning' must be a string"
    answer = obj["Answer"]
    text_answers = task is not None and puzzle is not None and not isinstance(answer, bool) and isinstance(answer, str)
    if (isinstance(answer, bool) or not isinstance(answer, int)) and not text_answers:
        return None, f"schema: 'Answer' must be an integer, got {answer!r}"
    try:
        page = collapse(obj["Reasoning"])
    except MalformedTrace as e:
        return None, f"malformed_backspaces: {e}"
    if not states_answer(page, answer):
        return None, f"missing_answer: the last line of the reasoning does not state {answer!r}"
    if task is not None and puzzle is not None:
        try:
            puzzle = task.parse_puzzle(puzzle)
        except ValueError as e:
            return None, f"schema: 'puzzle' is not a {task_name} puzzle: {e}"
        if not task.verify(puzzle, answer):
            return None, f"wrong_answer: {answer!r} does not solve the {task_name} puzzle"
    else:
        known = arithmetic_answer(obj["Question"])
        if known is not None and known != answer:
            return None, f"wrong_answer: the question's value is {known}, not {answer}"
    if len(obj["Reasoning"]) > max_chars:
        return None, f"over_length: {len(obj['Reasoning'])} characters, the budget is {max_chars}"
    erased = BACKSPACE in obj["Reasoning"]
    record = {
        "Question": obj["Question"], "Answer": answer, "Reasoning": obj["Reasoning"],
        "id": f"human/{path.stem}", "task": task_name if task is not None and puzzle is not None else HUMAN,
        "split": "train", "style": "backspace" if erased else "direct", "source": "human",
        "puzzle": puzzle if task is not None and puzzle is not None
        else {"Question": obj["Question"], "Answer": answer},
        "stats": {"steps": 0, "abandoned_steps": 0, "backspaces": obj["Reasoning"].count(BACKSPACE),
                  "characters": len(obj["Reasoning"]), "slips": 0},
    }
    return record, None


def read_folder(folder: Path, max_chars: int = 2048) -> tuple[list[dict], list[tuple[str, str]]]:
    """(good records in file-name order, [(file name, reason)] for the bad files)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    good, bad = [], []
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".timings.json"):  # keystroke timings the recorder writes beside a trace
            continue
        record, reason = check_file(path, max_chars)
        if record is None:
            bad.append((path.name, reason))
        else:
            good.append(record)
    return good, bad


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generate.human", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a folder of seed-format JSON files")
    ap.add_argument("--out", type=Path, help="write the good traces as records, one JSON per line")
    ap.add_argument("--max-chars", type=int, default=2048, help="length budget of a Reasoning (default 2048)")
    args = ap.parse_args(argv)
    try:
        good, bad = read_folder(args.folder, args.max_chars)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, reason in bad:
        print(f"bad  {name}: {reason}")
    for r in good:
        print(f"good {r['id'][len('human/'):]}.json ({r['stats']['characters']} characters, "
              f"{r['stats']['backspaces']} backspaces)")
    print(f"{len(good)} good, {len(bad)} bad, in {args.folder}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            for r in good:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {args.out}")
    return 0 if good or not bad else 1


if __name__ == "__main__":
    sys.exit(main())
