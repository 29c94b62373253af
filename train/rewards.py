"""Reward functions in TRL's signature: ``f(completions, **columns) -> list[float]``.

Each grades a completion with the same verifier the generator used (one verifier per task,
written once, in ``solvers``). The dataset columns ``puzzle`` (JSON text or a dict) and
``task`` reach them as keyword arguments, one value per completion.
"""

from __future__ import annotations

import json
import re

from solvers import verifier
from solvers.trace import ANSWER_PREFIX, MalformedTrace, collapse, final_answer


def _puzzle(p):
    return json.loads(p) if isinstance(p, str) else p


def strip_markers(completion: str) -> str:
    """The completion without outcome markers (``<success>``, ``<failure>``: sft.outcome_marker),
    which condition generation and are never part of an answer.

    >>> strip_markers("<success>1 + 2 = 3\\nAnswer: 1 + 2<failure>")
    '1 + 2 = 3\\nAnswer: 1 + 2'
    """
    from train.tokenizer import FAILURE, SUCCESS
    return completion.replace(SUCCESS, "").replace(FAILURE, "")


def _formats(kwargs: dict, n: int) -> list[str]:
    """The ``format`` column (``data.format``, one per completion) GRPO passes; plain without it."""
    return list(kwargs.get("format") or ["plain"] * n)


def judge(completion: str, puzzle, task: str, fmt: str = "plain") -> dict:
    """Everything evaluation records about one completion (outcome markers stripped first).
    ``fmt`` (``data.format``) says where the answer is: ``r1`` reads it after ``</think>``
    only, and an erasure that crosses one of the format's tags makes the stream malformed
    (``malformed_reason``: ``erases_across_tag``; else ``malformed_backspaces``).

    >>> judge("1 + 2 = 3\\n\\b\\bAnswer: 1 + 2", {"numbers": [1, 2], "target": 3}, "countdown")["correct"]
    False
    >>> judge("1 + 2 = 3\\nAnswer: 1 + 2", {"numbers": [1, 2], "target": 3}, "countdown")["correct"]
    True
    >>> judge("<success>1 + 2 = 3\\nAnswer: 1 + 2<success>", {"numbers": [1, 2], "target": 3}, "countdown")["answer"]
    '1 + 2'
    >>> judge("<think>\\nAnswer: 1 + 2\\n</think>\\n\\n", {"numbers": [1, 2], "target": 3}, "countdown", "r1")["answer"] is None
    True
    """
    from train.data import read_completion
    reason = None
    try:
        page, answer_page = read_completion(strip_markers(completion), fmt)
    except MalformedTrace as e:
        page = answer_page = None
        reason = "erases_across_tag" if str(e).startswith("erases_across_tag") else "malformed_backspaces"
    answer = final_answer(answer_page) if answer_page is not None else None
    correct = answer is not None and bool(verifier(task)(_puzzle(puzzle), answer))
    return {"collapsed": page, "answer": answer, "correct": correct, "malformed": reason is not None,
            "malformed_reason": reason}


def correctness(completions, puzzle, task, **kwargs) -> list[float]:
    """1.0 when the completion, backspaces applied, ends its reasoning with an ``Answer:``
    line that solves the puzzle; 0.0 otherwise, and for a malformed stream.

    >>> p = '{"numbers": [2, 3, 4], "target": 20}'
    >>> correctness(["2 + 3 = 5\\n5 * 4 = 20\\nAnswer: (2 + 3) * 4",   # right
    ...              "2 * 3 = 6\\nAnswer: 2 * 3 * 4",                    # wrong value
    ...              "\\b\\bAnswer: (2 + 3) * 4"],                       # erases nothing: malformed
    ...             puzzle=[p] * 3, task=["countdown"] * 3)
    [1.0, 0.0, 0.0]
    """
    return [float(judge(c, p, t, f)["correct"])
            for c, p, t, f in zip(completions, puzzle, task, _formats(kwargs, len(completions)))]


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 when every backspace has something to erase and the collapsed text's last line
    is an ``Answer:`` line; else 0.0.

    >>> format_reward(["x\\b1 + 1 = 2\\nAnswer: 2", "Answer: 2\\nmore", "\\bAnswer: 2"])
    [1.0, 0.0, 0.0]
    """
    from train.data import read_completion
    scores = []
    for c, fmt in zip(completions, _formats(kwargs, len(completions))):
        try:
            last = read_completion(c, fmt)[1].rsplit("\n", 1)[-1]
        except MalformedTrace:
            scores.append(0.0)
            continue
        scores.append(1.0 if last.startswith(ANSWER_PREFIX) else 0.0)
    return scores


def length_penalty(completions, max_chars: int = 2048, **kwargs) -> list[float]:
    """Minus the completion's share of the length budget, so a weight of w costs at most w.

    >>> length_penalty(["x" * 1024, "x" * 4096])
    [-0.5, -1.0]
    """
    return [-min(1.0, len(c) / max_chars) for c in completions]


def _program_score(completion: str, puzzle, task: str) -> float:
    from solvers import program, sandbox
    if task != program.NAME:
        return float(judge(completion, puzzle, task)["correct"])
    try:
        page = collapse(strip_markers(completion))
    except MalformedTrace:
        return 0.0
    found = program.programs(page)
    box = program.boxed(page)
    if not found or box is None:
        return 0.0
    puzzle = _puzzle(puzzle)
    if not program.verify(puzzle, box):
        return 0.0  # cheap first: no sandbox run for a wrong boxed value
    result = sandbox.run(found[-1][0], timeout=program.TIMEOUT, memory_mb=program.MEMORY_MB)
    printed = re.findall(r"-?\d+", result.stdout[-1000:])
    ok = result.returncode == 0 and not result.killed_by and printed and program.verify(puzzle, printed[-1])
    return 1.0 if ok else 0.0


def program_reward(completions, puzzle, task, **kwargs) -> list[float]:
    """For ``task == "program"``: 1.0 when the completion (backspaces applied) has a
    ``<program>`` block and a ``<boxed>`` value, the boxed value is the answer, and the LAST
    program, run again here in the sandbox (solvers/sandbox.py, 5 s, 256 MB), exits cleanly
    and the last integer it prints is the answer too; else 0.0. What the completion's own
    ``<output>`` block claims is ignored: only the real run counts. The ``Answer:`` line is
    not looked at (``correctness`` grades it). For any other task this is ``correctness``.
    Completions run in parallel threads, each in its own process (~0.2 s a run).

    >>> p = '{"family": "multiples", "a": 3, "b": 5, "limit": 10}'
    >>> right = "<program>\\nprint(sum(n for n in range(10) if n % 3 == 0 or n % 5 == 0))\\n</program>\\n"
    >>> program_reward([right + "<boxed>23</boxed>",                 # runs, prints 23, boxes 23
    ...                 right + "<boxed>24</boxed>",                 # boxed value wrong
    ...                 "<program>\\nprint(22)\\n</program>\\n<output>\\n23\\n</output>\\n<boxed>23</boxed>",  # the run prints 22
    ...                 "<boxed>23</boxed>"],                        # no program at all
    ...                puzzle=[p] * 4, task=["program"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(_program_score, completions, puzzle, task))


_TAG_LINE = re.compile(r"<(/?)(think|program|output|summary)>")


def tags_format(completions, **kwargs) -> list[float]:
    """1.0 when the completion, backspaces applied, is in the program task's tagged format:
    blocks ``<think>``, ``<program>``, ``<output>``, ``<summary>`` opened and closed in turn,
    never nested; every ``<program>`` followed at once by its ``<output>``; at least one
    program; then ``<summary>...</summary>`` and ``<boxed>N</boxed>`` (an integer) last,
    with nothing after it but an ``Answer:`` line. Outside the blocks only blank lines.
    Nothing is run. Else 0.0.

    >>> good = "<think>plan</think>\\n<program>\\nprint(1)\\n</program>\\n<output>\\n1\\n</output>\\n"
    >>> tags_format([good + "<summary>1</summary>\\n<boxed>1</boxed>\\nAnswer: 1",
    ...              good + "<boxed>1</boxed>",                                # no summary
    ...              good.replace("</output>", "") + "<summary>1</summary>\\n<boxed>1</boxed>",  # unclosed
    ...              "<summary>1</summary>\\n<boxed>1</boxed>"])               # no program
    [1.0, 0.0, 0.0, 0.0]
    """
    return [_tags_score(c) for c in completions]


def _tags_score(completion: str) -> float:
    try:
        lines = collapse(completion).split("\n")
    except MalformedTrace:
        return 0.0
    blocks, open_tag, previous = [], None, None
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


REWARDS = {"correctness": correctness, "format": format_reward, "length": length_penalty,
           "program": program_reward, "tags": tags_format}
