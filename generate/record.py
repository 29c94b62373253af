"""Record human reasoning traces in the browser: one seed-format JSON file per problem.

    python -m generate.record                          # arithmetic questions, http://127.0.0.1:8765/
    python -m generate.record --task countdown --seed 3 --timings
    python -m generate.record --questions my.jsonl     # {"Question": ..., "Answer": 42} per line

A local web app (stdlib ``http.server``, one static page, ``generate/record_page.html``). The
page's editor only appends: a printable key appends its character, Enter appends "\\n",
Backspace appends U+0008 and removes the last visible character. Cursor moves, paste, cut,
drop and selection edits are blocked, so what is recorded is exactly text plus backspaces,
the way a person typed it. The person enters the answer; the server checks it (the task's
``verify``, or the file's integer ``Answer``) and, on save, writes

    {"Question": "...", "Answer": 258, "Reasoning": "... with U+0008 ..."}

to ``--out`` (default ``data/human/``) as ``{task}-{YYYYmmdd-HHMMSS}-{n}.json``, plus
``"task"`` and ``"puzzle"`` when the question came from a task (``generate.human`` then checks
the answer with the task's verifier). ``Answer`` is an int where the task's answer is an
integer (arithmetic, file questions) and a string where it is text (a Countdown expression,
a Sudoku grid, a graph path). With ``--timings`` a sibling ``.timings.json`` holds one
``[ms since the question was shown, character]`` pair per character of the Reasoning.

The HTTP server, its safety rules and its limits are in ``generate.record_server``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from generate.human import BadFile, check_string, parse, read_bytes, states_answer
from generate.record_server import (BUDGET, LOOPBACK, MAX_BODY, MAX_THREADS, NAME_KEYS,  # noqa: F401
                                    TIMEOUT, Handler, RecordServer, RequestError, allowed_hosts,
                                    page_html)
from generate.splits import item_rng
from solvers import TASKS
from solvers.trace import MalformedTrace, collapse

MAX_ANSWER_CHARS = 4096  # a graph path on a large maze is the longest answer a task accepts
SEARCH_LIMIT = 10_000    # questions tried for one not yet recorded before giving up on novelty
# Tasks whose puzzles the page may draw for a person (Task.RECORDABLE), and those whose answer
# is text (Task.ANSWER_KIND: an expression, a path, a grid); other answers are integers, as in
# the seed format.
SAMPLED_TASKS = tuple(name for name, task in TASKS.items() if task.RECORDABLE)
TEXT_ANSWER_TASKS = tuple(name for name, task in TASKS.items() if task.ANSWER_KIND == "text")
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only, as arithmetic.verify
# What a Reasoning may hold: printable text, "\n" and U+0008. Other control characters
# ("\r", "\t", NUL, escape) are not typed by the page, so a stream holding one did not come from it.
_CONTROL = re.compile(r"[\x00-\x07\x09\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Question:
    index: int
    text: str
    task: Optional[str]   # a task name, or None for a plain "Question" line of a file
    puzzle: Optional[dict]
    answer: Optional[int]  # the known integer answer of a file question, if given

    @property
    def integer_answer(self) -> bool:
        """Whether the seed format's Answer is an int here (else the task's text answer)."""
        return self.task not in TEXT_ANSWER_TASKS


def read_questions(path: Path, task: str) -> list[Question]:
    """A questions file: one JSON object per line, ``{"Question": str, "Answer": int}``
    (Answer optional) or ``{"puzzle": {...}}`` (a puzzle of ``--task``, or of ``"task"``
    when the line names one). Blank lines are skipped; a bad line raises ValueError naming it."""
    out: list[Question] = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:  # not UTF-8, not JSON, too deep, a huge integer, a lone surrogate or NUL
                obj = parse(line)
            except BadFile as e:
                raise ValueError(f"{where}: {e}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
            if "puzzle" in obj:
                name = obj.get("task", task)
                if name not in TASKS or set(obj) - {"puzzle", "task"}:
                    raise ValueError(f"{where}: a puzzle line is {{\"puzzle\": {{...}}, \"task\": one of "
                                     f"{', '.join(TASKS)} (optional)}}")
                try:
                    puzzle = TASKS[name].parse_puzzle(obj["puzzle"])
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
                out.append(Question(len(out), TASKS[name].question(puzzle), name, puzzle, None))
                continue
            text, answer = obj.get("Question"), obj.get("Answer")
            if not isinstance(text, str) or not text.strip() or set(obj) - {"Question", "Answer"}:
                raise ValueError(f"{where}: expected {{\"Question\": \"...\", \"Answer\": 42}} "
                                 f"(Answer optional) or {{\"puzzle\": {{...}}}}")
            if answer is not None and (type(answer) is not int):
                raise ValueError(f"{where}: 'Answer' must be an integer, got {answer!r}")
            out.append(Question(len(out), text.strip(), None, None, answer))
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


def recorded_questions(out: Path) -> set[str]:
    """The Question of every trace already in ``out``: the recorder does not hand them out again."""
    seen = set()
    for path in out.glob("*.json"):
        if path.name.endswith(".timings.json"):
            continue
        try:  # read as generate.human reads: no FIFO opened, no symlink followed out of ``out``
            q = parse(read_bytes(path, out)).get("Question")
        except (BadFile, AttributeError):
            continue
        if isinstance(q, str):
            seen.add(q)
    return seen


class Recorder:
    """Where the questions come from and where the traces go; thread-safe.

    A question is named by its index alone: from a task, index n is the puzzle sampled with
    ``item_rng(task, "record", seed, n)``, so a page reloaded after a server restart (same
    ``--task`` and ``--seed``) still names the same question.
    """

    def __init__(self, task: str = "arithmetic", seed: int = 0, out: Path = Path("data/human"),
                 questions: Optional[Path] = None, timings: bool = False, allow_wrong: bool = False,
                 max_body: int = MAX_BODY, reanswer: bool = False) -> None:
        if task not in SAMPLED_TASKS:
            raise ValueError(f"--task must be one of {', '.join(SAMPLED_TASKS)}; got {task!r}")
        self.task, self.seed, self.out = task, seed, Path(out)
        self.timings, self.allow_wrong, self.max_body = timings, allow_wrong, max_body
        self.reanswer = reanswer
        self.file = Path(questions) if questions else None
        self.listed = read_questions(self.file, task) if self.file else None
        self.config = TASKS[task].Config()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one save at a time: "already saved?" and the write are one step
        self._cache: dict[int, Question] = {}
        self._next = 0
        self._saves = 0
        self._saved: dict[int, str] = {}  # question index -> file name, this session
        self._done = recorded_questions(self.out) if self.out.is_dir() else set()
        self._stamp = lambda: time.strftime("%Y%m%d-%H%M%S")

    @property
    def source(self) -> str:
        return str(self.file) if self.file else f"task {self.task}, seed {self.seed}"

    def question(self, index: Any) -> Question:
        if type(index) is not int or index < 0 or (self.listed is not None and index >= len(self.listed)):
            limit = f"0 to {len(self.listed) - 1}" if self.listed is not None else ">= 0"
            raise RequestError(400, f"'id' must be a question number ({limit}), got {index!r}")
        if self.listed is not None:
            return self.listed[index]
        with self._lock:
            if index not in self._cache:
                module = TASKS[self.task]
                puzzle = module.sample(self.config, item_rng(self.task, "record", self.seed, index))
                self._cache[index] = Question(index, module.question(puzzle), self.task, puzzle, None)
            return self._cache[index]

    def next_question(self) -> Optional[Question]:
        """The next question not yet recorded (in ``--out``) or handed out in this session;
        None when a questions file is used up."""
        for _ in range(SEARCH_LIMIT):
            with self._lock:
                index = self._next
                self._next += 1
            if self.listed is not None and index >= len(self.listed):
                return None
            q = self.question(index)
            if q.text not in self._done:
                return q
        # a small puzzle space, all recorded: repeats only where re-answering was asked for
        return self.question(index) if self.reanswer else None

    def check(self, q: Question, answer: Any) -> tuple[Optional[bool], Any, str]:
        """(correct or None when nothing can check it, the Answer as the seed format writes it,
        a message for the person)."""
        if not isinstance(answer, str) or not answer.strip():
            raise RequestError(400, "'answer' must be a non-empty string")
        if len(answer) > MAX_ANSWER_CHARS:
            raise RequestError(400, f"'answer' is longer than {MAX_ANSWER_CHARS} characters")
        _encodable(answer, "'answer'")
        answer = answer.strip()
        if q.integer_answer:
            if not _INTEGER.fullmatch(answer):
                return False, None, f"the answer must be an integer, like 42 (got {answer!r})"
            value: Any = int(answer)
        else:
            value = answer
        if q.task is not None:
            ok = TASKS[q.task].verify(q.puzzle, value)
        elif q.answer is not None:
            ok = value == q.answer
        else:
            return None, value, "no answer to check against: saved as given"
        return ok, value, "right" if ok else "wrong"

    def save(self, q: Question, reasoning: str, answer: Any, timings: Any) -> dict:
        check_reasoning(reasoning)
        correct, value, message = self.check(q, answer)
        if value is None:
            raise RequestError(400, message)
        if correct is False and not self.allow_wrong:
            raise RequestError(409, f"the answer {value!r} is wrong: fix it, or skip the question")
        if not states_answer(collapse(reasoning), value):
            raise RequestError(400, f"end the reasoning with a line that states the answer, "
                                    f"such as \"Answer: {value}\"")
        if self.timings and timings is not None:
            check_timings(timings, reasoning)
        record: dict[str, Any] = {"Question": q.text, "Answer": value, "Reasoning": reasoning}
        if q.task is not None:
            record.update(task=q.task, puzzle=q.puzzle)
        # encoded in full before any file is opened: what cannot be written is refused here
        try:
            data = (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
            extra = json.dumps(timings, ensure_ascii=False).encode("utf-8") if self.timings and timings is not None \
                else None
        except (UnicodeEncodeError, ValueError) as e:
            raise RequestError(400, f"the trace cannot be written as UTF-8 JSON: {e}") from None
        with self._save_lock:
            if not self.reanswer:
                if q.index in self._saved:
                    raise RequestError(409, f"question {q.index} is already saved as {self._saved[q.index]}")
                if q.text in self._done:
                    raise RequestError(409, f"question {q.index} is already recorded in {self.out}/ "
                                            f"(--reanswer records it again)")
            name = self._write(q, data, extra)
            with self._lock:
                self._done.add(q.text)
                self._saved[q.index] = name
        over = len(reasoning) > BUDGET
        return {"saved": name, "correct": correct, "characters": len(reasoning),
                "message": f"saved {name}" + (f" ({len(reasoning)} characters: over the {BUDGET} "
                                              f"budget)" if over else "")}

    def _write(self, q: Question, data: bytes, timings: Optional[bytes]) -> str:
        """Write the trace (and its timings) under a new name: each goes to a temporary file
        first, then is linked to its name, which fails rather than overwrite a file that is
        there; the trace is linked last, so a reader never sees it without its timings."""
        self.out.mkdir(parents=True, exist_ok=True)
        prefix = q.task or (re.sub(r"[^A-Za-z0-9_]+", "_", self.file.stem)[:40] or "question")
        tmp = [self.out / f".{prefix}-{os.getpid()}-{threading.get_ident()}.{kind}.tmp"
               for kind in ("trace", "timings")]
        try:
            _write_file(tmp[0], data)
            if timings is not None:
                _write_file(tmp[1], timings)
            while True:
                with self._lock:
                    self._saves += 1
                    stem = f"{prefix}-{self._stamp()}-{self._saves:04d}"
                path = self.out / f"{stem}.json"
                if timings is not None:
                    try:
                        _link_new(tmp[1], self.out / f"{stem}.timings.json")
                    except FileExistsError:
                        continue
                try:
                    _link_new(tmp[0], path)
                except FileExistsError:
                    if timings is not None:
                        (self.out / f"{stem}.timings.json").unlink(missing_ok=True)
                    continue
                return path.name
        finally:
            for t in tmp:
                t.unlink(missing_ok=True)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _link_new(tmp: Path, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path``; FileExistsError if that is taken."""
    try:
        os.link(tmp, path)  # atomic, and never replaces a file
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (saves are serialised)
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)


def _encodable(text: str, field: str) -> None:
    try:
        check_string(text, field)
    except BadFile as e:
        raise RequestError(400, str(e).split(": ", 1)[1]) from None  # "'reasoning' holds NUL (U+0000) at ..."


def check_reasoning(reasoning: Any) -> None:
    if not isinstance(reasoning, str):
        raise RequestError(400, "'reasoning' must be a string")
    _encodable(reasoning, "'reasoning'")
    bad = _CONTROL.search(reasoning)
    if bad:
        raise RequestError(400, f"'reasoning' holds control character U+{ord(bad[0]):04X} at "
                                f"{bad.start()}: only text, newlines and backspaces (U+0008) are recorded")
    try:
        kept = collapse(reasoning)
    except MalformedTrace as e:
        raise RequestError(400, f"'reasoning' erases more than it wrote: {e}") from None
    if not kept.strip():
        raise RequestError(400, "'reasoning' is empty once its backspaces are applied")


def check_timings(timings: Any, reasoning: str) -> None:
    """One ``[ms, character]`` pair per character of the Reasoning, in order."""
    if (not isinstance(timings, list) or len(timings) != len(reasoning)
            or not all(isinstance(t, list) and len(t) == 2 and type(t[0]) in (int, float)
                       and not isinstance(t[0], bool) and t[0] >= 0 and t[1] == c
                       for t, c in zip(timings, reasoning))):
        raise RequestError(400, "'timings' must be one [ms, character] pair per character of 'reasoning'")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m generate.record",
        description="Record human reasoning traces with real backspaces (U+0008) in a local web page: "
                    "one seed-format JSON file per problem.",
        epilog="The page appends only (keys, Enter, Backspace as U+0008); paste, cut, drop and cursor "
               "moves are blocked. Unsaved work survives a reload (localStorage).")
    ap.add_argument("--task", default="arithmetic", choices=SAMPLED_TASKS,
                    help="task whose sampler makes the questions (its Config defaults); default arithmetic")
    ap.add_argument("--seed", type=int, default=0,
                    help="question n is sampled from the string seed 'TASK/record/SEED/n' (default 0)")
    ap.add_argument("--questions", type=Path, metavar="FILE",
                    help='JSONL of {"Question": "...", "Answer": 42} (Answer optional, an integer) or '
                         '{"puzzle": {...}, "task": "..."} lines, asked in order, instead of sampling')
    ap.add_argument("--out", type=Path, default=Path("data/human"),
                    help="folder for the trace files (default data/human/)")
    ap.add_argument("--timings", action="store_true",
                    help="also write NAME.timings.json: [ms since the question was shown, character] per character")
    ap.add_argument("--allow-wrong", action="store_true",
                    help="save traces whose answer the checker rejects (default: refuse them)")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; anything else exposes the recorder to the network)")
    ap.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    ap.add_argument("--max-body", type=int, default=MAX_BODY,
                    help=f"largest request body in bytes (default {MAX_BODY}); larger ones get 413")
    ap.add_argument("--reanswer", action="store_true",
                    help="allow more than one trace per question (default: a question is saved once)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT,
                    help=f"seconds a request may take to arrive (default {TIMEOUT:g}); slower ones are dropped")
    ap.add_argument("--max-threads", type=int, default=MAX_THREADS,
                    help=f"requests served at once (default {MAX_THREADS}); more wait in the listen queue")
    ap.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="with --host other than 127.0.0.1: a further name this machine is reached by "
                         "(Host and Origin are checked against the machine's own names and addresses)")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    try:
        recorder = Recorder(args.task, args.seed, args.out, args.questions, args.timings,
                            args.allow_wrong, args.max_body, args.reanswer)
        server = RecordServer(recorder, args.host, args.port, args.verbose, args.timeout, args.max_threads,
                              tuple(args.allow_host))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not server.loopback:
        print(f"warning: --host {args.host} makes the recorder reachable from the network: anyone who can "
              f"reach port {server.server_address[1]} can read the questions and save traces. Requests must "
              f"still name this machine (Host: {', '.join(sorted(server.hosts))}) and come from its page.",
              file=sys.stderr, flush=True)
    print(f"recording {recorder.source} into {args.out}/ at {server.url}  (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
