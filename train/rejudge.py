"""python -m train.rejudge RUN: re-judge a run's samples.jsonl and compare with its metrics.

It trusts nothing the run wrote but the raw completions and the puzzles: where the task brings
an independent checker (``Task.CHECKER``; countdown's is in solvers/independent.py) it applies
the backspaces again, reads the last ``Answer:`` line again and checks it with its own exact
arithmetic (not the project's verifier), then recomputes greedy accuracy. Outcome markers
(``<success>``, ``<failure>``) are dropped before reading. It recomputes the loop rate too
(``train.evaluate.is_loop`` on each greedy completion; the limit is ``eval.max_new_tokens``
from the run's ``config.json``, compared with the row's ``tokens``). A run with
``data.format=r1`` (read from ``config.json``) has its answer read after ``</think>`` only,
and the text before and after that tag has its erasures applied apart (no erasure crosses it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from solvers import TASKS
from solvers.independent import answer_text, apply_erasures


def checker(task: str):
    """The task's own independent checker (``Task.CHECKER``), or None."""
    return TASKS[task].CHECKER if task in TASKS else None


def project_verdict(row: dict, fmt: str = "plain") -> bool:
    """For tasks without an independent checker here: the project's own collapse and verifier
    (so the re-judging re-reads the text but is not independent; the output says so)."""
    from solvers import verifier
    from solvers.trace import final_answer
    text = answer_text(row["completion"], fmt)
    page = apply_erasures(text) if text is not None else None
    answer = final_answer(page) if page is not None else None
    return answer is not None and bool(verifier(row["task"])(row["puzzle"], answer))


def rejudge(run_dir: Path, mode: str | None = None) -> dict:
    """Re-judge the main evaluation's completions, or with ``mode`` those of that extra decoding."""
    from train.evaluate import samples_file
    rows = [json.loads(line) for line in open(run_dir / samples_file(mode), encoding="utf-8")]
    greedy = [r for r in rows if r["mode"] == "greedy"]
    config = run_dir / "config.json"
    fmt = (json.loads(config.read_text()).get("data") or {}).get("format", "plain") if config.exists() else "plain"
    checkers = [checker(r["task"]) for r in greedy]
    verdicts = [check(r["puzzle"], r["completion"], fmt) if check else project_verdict(r, fmt)
                for r, check in zip(greedy, checkers)]
    disagree = sum(v != r["correct"] for v, r in zip(verdicts, greedy))
    result = {"problems": len(greedy), "accuracy": sum(verdicts) / len(greedy), "disagreements": disagree,
              "independent": sum(check is not None for check in checkers)}
    if config.exists():
        from train.evaluate import extra_config, is_loop
        e = json.loads(config.read_text())["eval"]
        limit = (extra_config(e, mode) if mode else e)["max_new_tokens"]
        result["loop_rate"] = sum(is_loop(r["completion"], r["tokens"] >= limit) for r in greedy) / len(greedy)
    return result


def main() -> None:
    """Re-judge samples.jsonl, then samples.<mode>.jsonl of each extra decoding (eval.extra_decodings)."""
    run_dir = Path(sys.argv[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from train.evaluate import samples_file
    passes = [(None, metrics)] + list((metrics.get("decodings") or {}).items())
    disagreements = 0
    for mode, said in passes:
        result = rejudge(run_dir, mode)
        disagreements += result["disagreements"]
        print(f"{run_dir / samples_file(mode)}: re-judged greedy accuracy {result['accuracy']:.4f} on {result['problems']} "
              f"problems (metrics.json says {said['accuracy']:.4f}; {result['disagreements']} verdicts differ; "
              f"{result['independent']} judged by this module's own checker, the rest by the project's verifier)")
        if "loop_rate" in result:
            print(f"loop rate {result['loop_rate']:.4f} (metrics.json says {said.get('loop_rate')})")
    sys.exit(0 if disagreements == 0 else 1)


if __name__ == "__main__":
    main()
