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
not_a_file          a directory, FIFO, device or socket named ``*.json``: skipped without
                    opening it (a FIFO would block the import, a device never ends)
outside_folder      a symlink whose target is outside the folder
too_large           over ``--max-bytes`` (1 MiB by default); at most that much plus one byte
                    is ever read
unreadable          the operating system refused to read it (permissions, a symlink loop)
bad_unicode         not UTF-8, or a string (a value, a key or the file name) holding a lone
                    surrogate (``"\\ud800"``) or NUL: such a trace could not be written out
bad_json            not valid JSON (NaN and Infinity are not JSON either)
too_deep            arrays and objects nested deeper than 32
integer_too_long    an integer of more than 1000 digits
schema              not an object, a field missing, or a field of the wrong type (``Answer``
                    must be an integer unless the file names a task whose answers are text)
malformed_backspaces more backspaces than there is text before them
missing_answer      the last line of the collapsed Reasoning does not state the Answer
wrong_answer        a checker exists and says the Answer is wrong: the task's verifier, or,
                    for "What is 12 + 7 * 3?"-style questions, exact arithmetic (sympy)
over_length         the Reasoning is longer than the budget (2048 characters by default)
==================  ==========================================================================

A trace that passes can always be written: every string in it encodes as UTF-8, so
``--out`` and ``human=DIR`` never stop halfway. ``--out`` writes a temporary file and renames
it into place, so the file is complete or not there at all.

A good file becomes a record with the seed fields verbatim and ``source: "human"``. Files
that name no task get ``task: "human"`` and ``puzzle: {"Question", "Answer"}``: rewards and
evaluation then check an answer against the known Answer (``solvers.verifier``).

One file: reading files a person wrote without trusting them is one job, from the bounded
reader and parser (``read_bytes``, ``parse``, which the recorder reuses) to the checks behind
the reasons above and the CLI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Optional

from generate.write import atomic_file
from solvers import TASKS, HUMAN
from solvers.arith import exact_value
from solvers.trace import BACKSPACE, MalformedTrace, collapse

REASONS = ("not_a_file", "outside_folder", "too_large", "unreadable", "bad_unicode", "bad_json", "too_deep",
           "integer_too_long", "schema", "malformed_backspaces", "missing_answer", "wrong_answer", "over_length")
# A 2048-character Reasoning with its puzzle is a few KB of JSON; a 1 MiB limit leaves room
# for a large maze and keeps a runaway file (or a symlink to a huge one) out of memory.
MAX_BYTES = 1 << 20
# The seed format nests 3 deep (a graph puzzle: the object, "edges", one edge); 32 is generous,
# and far below the depth at which the json module or the checks below would recurse too deep.
MAX_DEPTH = 32
# Python refuses int("<4301 digits>") with a bare ValueError; no Answer or puzzle needs 1000.
MAX_DIGITS = 1000


class BadFile(ValueError):
    """A trace file that cannot be imported: ``reason`` (one of REASONS) and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, folder: Optional[Path] = None, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of ``path``, a file in ``folder``, whatever sits at that name: a directory,
    FIFO, device or socket is refused without being opened (a FIFO blocks the reader forever,
    /dev/zero never ends), a symlink is followed only to a target inside ``folder``, and no
    more than ``max_bytes`` + 1 bytes are read. Raises BadFile naming the reason."""
    folder = Path(folder) if folder is not None else Path(path).parent
    try:
        target = path
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            root, target = os.path.realpath(folder), os.path.realpath(path)
            if os.path.commonpath([root, target]) != root:
                raise BadFile("outside_folder", f"a symlink to {_display(target)}, outside {_display(root)}")
            st = os.stat(target)
        if not stat.S_ISREG(st.st_mode):
            raise BadFile("not_a_file", f"{_kind(st.st_mode)}, not a regular file: skipped without opening it")
        if st.st_size > max_bytes:
            raise BadFile("too_large", f"{st.st_size} bytes, the limit is {max_bytes}")
        # O_NONBLOCK and O_NOFOLLOW: should the name be swapped for a FIFO or a symlink
        # after the checks above, the open neither blocks nor follows it, and fstat sees it.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(target, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadFile("not_a_file", f"{_kind(os.fstat(fd).st_mode)}, not a regular file")
            chunks, left = [], max_bytes + 1
            while left > 0:
                block = os.read(fd, min(left, 1 << 16))
                if not block:
                    break
                chunks.append(block)
                left -= len(block)
        finally:
            os.close(fd)
    except OSError as e:
        raise BadFile("unreadable", f"{type(e).__name__}: {e.strerror or e}") from None
    data = b"".join(chunks)
    if len(data) > max_bytes:  # it grew after the stat
        raise BadFile("too_large", f"over {max_bytes} bytes")
    return data


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise BadFile("too_deep") when arrays and objects in a JSON text nest deeper than
    ``max_depth``: counted over the brackets outside strings, without recursion, before
    anything parses it.

    >>> check_depth('{"a": [[1]], "b": "[[[[["}', 3)
    >>> check_depth("[" * 100_000, 32)
    Traceback (most recent call last):
    ...
    generate.human.BadFile: too_deep: arrays and objects nested deeper than 32
    """
    depth = 0
    for c in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if c in "[{" else -1
        if depth > max_depth:
            raise BadFile("too_deep", f"arrays and objects nested deeper than {max_depth}")


def _parse_int(digits: str) -> int:
    if len(digits) - digits.startswith("-") > MAX_DIGITS:
        raise BadFile("integer_too_long", f"an integer of {len(digits.lstrip('-'))} digits, "
                                          f"the limit is {MAX_DIGITS}")
    return int(digits)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadFile("bad_json", f"the number {text[:20]}... is too large for a float")
    return value


def _parse_constant(name: str) -> Any:
    raise BadFile("bad_json", f"{name} is not a JSON number")


def parse(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON document from bytes, or BadFile: not UTF-8 (bad_unicode), not JSON, NaN or
    Infinity (bad_json), nested too deep (too_deep), an integer over MAX_DIGITS digits
    (integer_too_long), a string holding a lone surrogate or NUL (bad_unicode). What comes
    back can be written with ``json.dumps(...).encode("utf-8")``.

    >>> parse(b'{"Answer": 12}')
    {'Answer': 12}
    >>> parse(b'{"Question": "bad \\\\ud800"}')
    Traceback (most recent call last):
    ...
    generate.human.BadFile: bad_unicode: 'Question' holds a lone surrogate U+D800 at character 4
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadFile("bad_unicode", f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}") from None
    check_depth(text, max_depth)
    try:
        obj = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as e:
        raise BadFile("bad_json", str(e)) from None
    except RecursionError:  # not reached after check_depth; kept so no input can end in a traceback
        raise BadFile("too_deep", "arrays and objects nested too deep to parse") from None
    check_strings(obj)
    return obj


def check_string(s: str, where: str) -> None:
    """Raise BadFile("bad_unicode") when ``s`` cannot be written as UTF-8 (a lone surrogate,
    which JSON's ``\\ud800`` escapes and Linux file names can carry) or holds NUL."""
    nul = s.find("\x00")
    if nul >= 0:
        raise BadFile("bad_unicode", f"{where} holds NUL (U+0000) at character {nul}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadFile("bad_unicode", f"{where} holds a lone surrogate U+{ord(s[e.start]):04X} "
                                     f"at character {e.start}") from None


def check_strings(obj: Any) -> None:
    """check_string over every key and string value of a parsed document, without recursion;
    a field is named by its path (``'puzzle'.grid``, ``'Reasoning'``)."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            check_string(value, where or "the document")
        elif isinstance(value, dict):
            for key, item in value.items():
                check_string(key, f"a key of {where or 'the object'}")
                shown = repr(key) if len(key) <= 40 else repr(key[:40] + "...")
                stack.append((item, f"{where}.{shown}" if where else shown))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))


def _display(name: Any) -> str:
    """A file name or path as text that can always be printed and written: bytes that are
    not UTF-8 (held as lone surrogates by Python) become ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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


def check_file(path: Path, max_chars: int = 2048, folder: Optional[Path] = None,
               max_bytes: int = MAX_BYTES) -> tuple[Optional[dict], Optional[str]]:
    """(record, None) for a good file, (None, "reason: detail") for a bad one. ``folder``
    (default: the file's own) is where a symlink may point; nothing outside it is read."""
    path = Path(path)
    try:
        check_string(path.stem, "the file name")
        obj = parse(read_bytes(path, folder, max_bytes))
    except BadFile as e:
        return None, str(e)
    if not isinstance(obj, dict):
        return None, f"schema: expected a JSON object, got {type(obj).__name__}"
    for name in ("Question", "Answer", "Reasoning"):
        if name not in obj:
            return None, f"schema: missing field '{name}'"
    task_name, puzzle = obj.get("task"), obj.get("puzzle")
    if task_name is not None and not isinstance(task_name, str):
        return None, f"schema: 'task' must be a task name, got {type(task_name).__name__}"
    task = TASKS.get(task_name) if task_name not in (None, HUMAN) else None
    if task_name not in (None, HUMAN) and task is None:
        return None, f"schema: unknown task {_short(task_name)}; known: {', '.join(TASKS)}"
    if not isinstance(obj["Question"], str) or not obj["Question"].strip():
        return None, "schema: 'Question' must be a non-empty string"
    if not isinstance(obj["Reasoning"], str):
        return None, "schema: 'Reasoning' must be a string"
    answer = obj["Answer"]
    text_answers = task is not None and puzzle is not None and not isinstance(answer, bool) and isinstance(answer, str)
    if (isinstance(answer, bool) or not isinstance(answer, int)) and not text_answers:
        return None, f"schema: 'Answer' must be an integer, got {_short(answer)}"
    try:
        page = collapse(obj["Reasoning"])
    except MalformedTrace as e:
        return None, f"malformed_backspaces: {e}"
    if not states_answer(page, answer):
        return None, f"missing_answer: the last line of the reasoning does not state {_short(answer)}"
    if task is not None and puzzle is not None:
        try:
            puzzle = task.parse_puzzle(puzzle)
        except (ValueError, TypeError) as e:  # TypeError: a list where the task hashes a value
            return None, f"schema: 'puzzle' is not a {task_name} puzzle: {e}"
        if not task.verify(puzzle, answer):
            return None, f"wrong_answer: {_short(answer)} does not solve the {task_name} puzzle"
    else:
        known = arithmetic_answer(obj["Question"])
        if known is not None and known != answer:
            return None, f"wrong_answer: the question's value is {known}, not {_short(answer)}"
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


def _json_names(folder: Path) -> list[str]:
    """The names in ``folder`` that ``*.json`` matches (not hidden ones), sorted; nothing is
    opened or followed here."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.endswith(".json") and not e.name.startswith("."))


def folder_problem(folder: Path) -> Optional[str]:
    """Why ``folder`` cannot be listed as a folder of traces, or None: it is missing, it is
    a file (or a path runs through one), or the system refuses to list it (no read
    permission). ``generate human=DIR`` checks this before any work, naming the key."""
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except FileNotFoundError:
        return f"no such folder: {_display(folder)}"
    except NotADirectoryError:
        return f"{_display(folder)} is not a folder (a file, or a path through a file)"
    except OSError as e:
        return f"cannot list the folder {_display(folder)}: {e.strerror or e}"
    return None


def read_folder(folder: Path, max_chars: int = 2048,
                max_bytes: int = MAX_BYTES) -> tuple[list[dict], list[tuple[str, str]]]:
    """(good records in file-name order, [(file name, reason)] for the bad files). Every
    ``*.json`` entry is looked at on its own, whatever it is; a name that is not UTF-8 is
    reported with ``\\xNN`` escapes. A folder that cannot be listed is an OSError saying why."""
    folder = Path(folder)
    problem = folder_problem(folder)
    if problem:
        raise OSError(problem)
    good, bad = [], []
    for name in _json_names(folder):
        if name.endswith(".timings.json"):  # keystroke timings the recorder writes beside a trace
            continue
        record, reason = check_file(folder / name, max_chars, folder, max_bytes)
        if record is None:
            bad.append((_display(name), reason))
        else:
            good.append(record)
    return good, bad


def folder_digest(folder: Path, max_bytes: int = MAX_BYTES) -> str:
    """sha256 over the name and bytes of every ``*.json`` file in ``folder`` (the fingerprint
    of ``human=DIR``), each read as read_folder reads it: a file it refuses counts by its
    name and reason, so a FIFO or a symlink to /dev/zero is never opened."""
    h = hashlib.sha256()
    for name in _json_names(folder):
        try:
            data = read_bytes(Path(folder) / name, folder, max_bytes)
        except BadFile as e:
            data = f"<{e}>".encode("utf-8", "backslashreplace")
        h.update(os.fsencode(name) + b"\0" + data + b"\0")
    return f"sha256:{h.hexdigest()}"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generate.human", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a folder of seed-format JSON files")
    ap.add_argument("--out", type=Path, help="write the good traces as records, one JSON per line")
    ap.add_argument("--max-chars", type=int, default=2048, help="length budget of a Reasoning (default 2048)")
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES,
                    help=f"largest file read; larger ones are reported too_large (default {MAX_BYTES})")
    args = ap.parse_args(argv)
    try:
        good, bad = read_folder(args.folder, args.max_chars, args.max_bytes)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, reason in bad:
        print(f"bad  {name}: {reason}")
    for r in good:
        print(f"good {r['id'][len('human/'):]}.json ({r['stats']['characters']} characters, "
              f"{r['stats']['backspaces']} backspaces)")
    print(f"{len(good)} good, {len(bad)} bad, in {_display(args.folder)}")
    if args.out:
        # encoded in full before the file is touched; check_file let through only encodable strings
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in good).encode("utf-8")
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(args.out, "wb") as f:
                f.write(data)
        except OSError as e:
            print(f"error: cannot write --out {_display(args.out)}: {e}", file=sys.stderr)
            return 2
        print(f"wrote {_display(args.out)}")
    return 0 if good or not bad else 1


if __name__ == "__main__":
    sys.exit(main())
