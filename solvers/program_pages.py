"""Reading and running the programs of a task=program page: what an ``<output>`` block shows,
the programs and the ``<boxed>`` value of a page, the GRPO rewards that re-run the last program,
the tagged-format check, and the tool that ``eval.tool_loop`` calls. Pure Python; each reward
grades a collapsed page (backspaces already applied by the caller)."""

from __future__ import annotations

import functools
import re
from typing import Optional

from solvers import sandbox
from solvers.program_families import verify
from solvers.trace import ANSWER_PREFIX, MalformedTrace, collapse

TIMEOUT = 5.0  # seconds per program: the programs here take milliseconds
MEMORY_MB = 256
SCRATCH = "# scratch"  # a code line starting so (the search style's back line) drops the line above it


def shown(result: sandbox.Result) -> list[str]:
    """The lines an ``<output>`` block shows for a run: stdout then stderr, trailing spaces
    and leading and trailing blank lines dropped. A run killed by the sandbox says so."""
    text = result.stdout + result.stderr
    if result.killed_by:
        text += f"\n[killed: {result.killed_by}]"
    lines = [line.rstrip() for line in text.replace("\r", "").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return [line.replace("\b", "") for line in lines]


def execute(code: str) -> list[str]:
    """Run ``code`` in the sandbox; the lines its output block shows."""
    return shown(sandbox.run(code, timeout=TIMEOUT, memory_mb=MEMORY_MB))


@functools.lru_cache(maxsize=4096)
def _rerun(code: str) -> tuple[str, ...]:
    # The validator's own run, cached by source: the contract test validates one page in
    # forty styles and variants, and a program's output is a function of its text
    # (PYTHONHASHSEED=0 in the sandbox). Separate from the solver's runs, which are never cached.
    return tuple(execute(code))


def programs(page: str) -> list[tuple[str, Optional[list[str]]]]:
    """Every ``<program>`` block of a collapsed page, with the lines of the ``<output>``
    block right after it (None when there is none). A ``# scratch ...`` line (the
    ``search`` style's back line) drops the last code line above it that is not a comment.

    >>> programs("<program>\\nx = 2\\n# scratch that line\\nprint(3)\\n</program>\\n<output>\\n3\\n</output>\\n")
    [('print(3)', ['3'])]
    >>> programs("<program>\\nprint(1)\\n</program>\\ntext")
    [('print(1)', None)]
    """
    lines = page.split("\n")
    found, i = [], 0
    while i < len(lines):
        if lines[i].strip() != "<program>":
            i += 1
            continue
        code: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "</program>":
            if lines[i].lstrip().startswith(SCRATCH):
                for j in range(len(code) - 1, -1, -1):
                    if not code[j].lstrip().startswith("#"):
                        del code[j]
                        break
            else:
                code.append(lines[i])
            i += 1
        i += 1
        output = None
        if i < len(lines) and lines[i].strip() == "<output>":
            output, i = [], i + 1
            while i < len(lines) and lines[i].strip() != "</output>":
                output.append(lines[i].rstrip())
                i += 1
            while output and not output[-1]:
                output.pop()
            while output and not output[0]:
                output.pop(0)
            i += 1
        found.append(("\n".join(code), output))
    return found


_BOXED = re.compile(r"<boxed>\s*(.*?)\s*</boxed>")


def boxed(page: str) -> Optional[str]:
    """The text of the last ``<boxed>...</boxed>``, or None.

    >>> boxed("<boxed>1</boxed>\\n<boxed> 42 </boxed>\\nAnswer: 42")
    '42'
    """
    found = _BOXED.findall(page[-100_000:])
    return found[-1] if found else None


CLOSE = "</program>"
MAX_OUTPUT = 1024  # bytes of a run's output kept (first and last half): a runaway print must not fill the context


def program_score(page: str, puzzle: dict) -> float:
    """1.0 when the page has a ``<program>`` block and a ``<boxed>`` value, the boxed value is
    the answer, and the LAST program, run again here in the sandbox (5 s, 256 MB), exits
    cleanly and the last integer it prints is the answer too; else 0.0. What the page's own
    ``<output>`` block claims is ignored: only the real run counts. The ``Answer:`` line is not
    looked at (``correctness`` grades it).

    >>> p = {"family": "multiples", "a": 3, "b": 5, "limit": 10}
    >>> right = "<program>\\nprint(sum(n for n in range(10) if n % 3 == 0 or n % 5 == 0))\\n</program>\\n"
    >>> [program_score(page, p) for page in (
    ...     right + "<boxed>23</boxed>",                 # runs, prints 23, boxes 23
    ...     right + "<boxed>24</boxed>",                 # boxed value wrong
    ...     "<program>\\nprint(22)\\n</program>\\n<output>\\n23\\n</output>\\n<boxed>23</boxed>",  # the run prints 22
    ...     "<boxed>23</boxed>")]                        # no program at all
    [1.0, 0.0, 0.0, 0.0]
    """
    found = programs(page)
    box = boxed(page)
    if not found or box is None or not verify(puzzle, box):
        return 0.0  # cheap first: no sandbox run for a wrong boxed value
    result = sandbox.run(found[-1][0], timeout=TIMEOUT, memory_mb=MEMORY_MB)
    printed = re.findall(r"-?\d+", result.stdout[-1000:])
    ok = result.returncode == 0 and not result.killed_by and printed and verify(puzzle, printed[-1])
    return 1.0 if ok else 0.0


def tags_score(page: str, puzzle: Optional[dict] = None) -> float:
    """1.0 when the page is in the program task's tagged format: blocks ``<think>``,
    ``<program>``, ``<output>``, ``<summary>`` opened and closed in turn, never nested; every
    ``<program>`` followed at once by its ``<output>``; at least one program; then
    ``<summary>...</summary>`` and ``<boxed>N</boxed>`` (an integer) last, with nothing after it
    but an ``Answer:`` line. Outside the blocks only blank lines. Nothing is run. Else 0.0.

    >>> good = "<think>plan</think>\\n<program>\\nprint(1)\\n</program>\\n<output>\\n1\\n</output>\\n"
    >>> [tags_score(page) for page in (
    ...     good + "<summary>1</summary>\\n<boxed>1</boxed>\\nAnswer: 1",
    ...     good + "<boxed>1</boxed>",                                # no summary
    ...     good.replace("</output>", "") + "<summary>1</summary>\\n<boxed>1</boxed>",  # unclosed
    ...     "<summary>1</summary>\\n<boxed>1</boxed>")]               # no program
    [1.0, 0.0, 0.0, 0.0]
    """
    lines = page.split("\n")
    blocks, open_tag = [], None
    for i, line in enumerate(lines):
        text = line.strip()
        if open_tag is not None:  # inside a block: only its closing tag matters
            if text == f"</{open_tag}>":
                open_tag = None
            continue
        if not text:
            continue
        one_line = re.fullmatch(r"<(think|summary)>.*</\1>", text)
        if one_line:
            blocks.append(one_line[1])
        elif text in ("<think>", "<program>", "<output>", "<summary>"):
            open_tag = text[1:-1]
            blocks.append(open_tag)
        elif re.fullmatch(r"<boxed>\s*-?\d+\s*</boxed>", text):
            blocks.append("boxed")
            rest = [x for x in lines[i + 1:] if x.strip()]
            if rest and not (len(rest) == 1 and rest[0].startswith(ANSWER_PREFIX)):
                return 0.0
            break
        else:
            return 0.0  # text outside any block
    if open_tag is not None or blocks[-2:] != ["summary", "boxed"] or "program" not in blocks:
        return 0.0
    for a, b in zip(blocks, blocks[1:]):
        if (a == "program") != (b == "output"):
            return 0.0
    return 1.0


def insertion(code: str, timeout: float) -> str:
    """What is appended after ``</program>``: the real output block of ``code``.

    >>> insertion("print(6 * 7)", 5)
    '\\n<output>\\n42\\n</output>\\n'
    >>> insertion("pass", 5)
    '\\n<output>\\n</output>\\n'
    """
    lines = shown(sandbox.run(code, timeout=timeout, memory_mb=MEMORY_MB, max_output=MAX_OUTPUT))
    return "\n<output>\n" + "".join(line + "\n" for line in lines) + "</output>\n"


def pending_program(completion: str) -> str | None:
    """The program to run when ``completion`` (raw, backspaces included) has just closed a
    block: the last ``<program>`` block of the collapsed text, if it has no output yet.

    >>> pending_program("<think>x</think>\\n<program>\\nprint(1)\\n</program>")
    'print(1)'
    >>> pending_program("<program>\\nprint(1)\\n</program>\\n<output>\\n1\\n</output>\\n") is None
    True
    >>> pending_program("\\b</program>") is None      # malformed: nothing to erase
    True
    """
    try:
        page = collapse(completion)
    except MalformedTrace:
        return None
    if not page.rstrip().endswith(CLOSE) or page.rstrip().rsplit("\n", 1)[-1].strip() != CLOSE:
        return None
    found = programs(page)
    if not found or found[-1][1] is not None:
        return None
    return found[-1][0]
