"""Reward functions in TRL's signature: ``f(completions, **columns) -> list[float]``.

Each grades a completion with the same verifier the generator used (one verifier per task,
written once, in ``solvers``). The dataset columns ``puzzle`` (JSON text or a dict) and
``task`` reach them as keyword arguments, one value per completion.
"""

from __future__ import annotations

import json

from solvers import verifier
from solvers.trace import ANSWER_PREFIX, MalformedTrace, final_answer


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


def task_reward(name: str):
    """The reward ``name`` that a task declares (``Task.REWARDS``: a scorer of the collapsed
    page, e.g. task=program's ``program``, which re-runs the last program in the sandbox, and
    ``tags``) in TRL's signature. A completion that is not a well-formed stream scores 0.0; a
    row of a task that does not declare it is graded by ``correctness``. Rows are scored in
    parallel threads (a sandbox run is its own process). Without a ``task`` column, the one
    task that declares the reward grades every row.

    >>> p = '{"family": "multiples", "a": 3, "b": 5, "limit": 10}'
    >>> right = "<program>\\nprint(sum(n for n in range(10) if n % 3 == 0 or n % 5 == 0))\\n</program>\\n"
    >>> REWARDS["program"]([right + "<boxed>23</boxed>",     # runs, prints 23, boxes 23
    ...                     right + "<boxed>2\\b4</boxed>"],  # boxes 24 once the backspace is applied
    ...                    puzzle=[p] * 2, task=["program"] * 2)
    [1.0, 0.0]
    """
    from concurrent.futures import ThreadPoolExecutor

    from solvers import TASKS
    from train.data import read_completion

    owners = {t.NAME: t.REWARDS[name] for t in TASKS.values() if name in t.REWARDS}

    def score(completion: str, puzzle, task, fmt: str) -> float:
        scorer = owners.get(task) if task is not None else next(iter(owners.values()))
        if scorer is None:
            return float(judge(completion, puzzle, task, fmt)["correct"])
        try:
            page = read_completion(strip_markers(completion), fmt)[0]
        except MalformedTrace:
            return 0.0
        return float(scorer(page, _puzzle(puzzle)))

    def reward(completions, puzzle=None, task=None, **kwargs) -> list[float]:
        n = len(completions)
        if task is None and len(owners) != 1:
            raise ValueError(f"reward {name!r} needs the task column: {len(owners)} tasks declare it")
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(score, completions, puzzle or [None] * n, task or [None] * n, _formats(kwargs, n)))

    reward.__name__ = f"{name}_reward"  # TRL logs rewards/<__name__>
    return reward


def _task_rewards() -> dict:
    from solvers import TASKS
    return {name: task_reward(name) for t in TASKS.values() for name in t.REWARDS}


REWARDS = {"correctness": correctness, "format": format_reward, "length": length_penalty, **_task_rewards()}
