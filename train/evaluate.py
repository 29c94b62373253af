"""Evaluation on held-out puzzles: greedy accuracy, pass@k, and how the model writes.

Every generated completion goes to ``RUN/samples.jsonl`` with its puzzle, the raw text
(backspaces included), the collapsed text, the parsed answer and the verdict, so that
anyone can re-judge the figures in ``RUN/metrics.json`` (``python -m train.rejudge RUN``).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np

from solvers import TASKS
from solvers.trace import BACKSPACE, BACKTRACK_TOKEN
from train import decode
from train.data import FORMAT_TAGS, prompt_of
from train.rewards import judge
from train.tokenizer import SUCCESS

LOOP_MIN_SPAN = 8     # is_loop: the repeated span is at least this many characters
LOOP_MIN_REPEATS = 3  # ... written at least this many times in a row
LOOP_MIN_SHARE = 4    # ... and the repetition covers at least the last 1/4 of the completion


def is_loop(text: str, hit_limit: bool) -> bool:
    """Did generation loop: the completion ran to ``max_new_tokens`` (``hit_limit``) and its
    end repeats one span of p >= 8 characters at least 3 times in a row, the repetition
    covering at least the last quarter of the text. Precisely: for some p >= 8, the suffix of
    length max(ceil(len(text) / 4), 3 p) exists and has period p (each character equals the
    one p before it), so it may start and stop mid-span. Spans shorter than 8 count through
    their multiples ("ab" * 20 has period 8 too). The raw text is read, backspaces included:
    typing and erasing the same line forever is a loop as well.

    >>> is_loop("Answer: 4\\n" + "3 + 1 = 4\\n" * 30, True)     # a repeated line to the limit
    True
    >>> is_loop("Answer: 4\\n" + "3 + 1 = 4\\n" * 30, False)    # the same, but it stopped by itself
    False
    >>> is_loop("1 + 2 = 3\\n" * 2 + "Answer: 3", True)        # ran out, but nothing repeats 3 times
    False
    """
    n = len(text)
    if not hit_limit:
        return False
    tail = -(-n // LOOP_MIN_SHARE)
    for p in range(LOOP_MIN_SPAN, n // LOOP_MIN_REPEATS + 1):
        suffix = text[n - max(tail, LOOP_MIN_REPEATS * p):]
        if suffix[p:] == suffix[:-p]:
            return True
    return False


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al., 2021): the chance that at least one of k
    samples drawn without replacement from n, of which c are correct, is correct.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 2), pass_at_k(4, 3, 2)
    (0.25, 0.5, 0.0, 1.0)
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


EXTRA_KEYS = ("n_problems", "num_samples", "k", "temperature", "max_new_tokens", "batch_size", "self_backtrack")


def check_extra(e: dict) -> None:
    """Refuse a bad ``eval.extra_decodings``: a mapping of decoding mode -> eval keys that
    differ for that pass (``{erase: {}, self_backtrack: {num_samples: 0}}``)."""
    from solvers.config import ConfigError
    extra = e.get("extra_decodings") or {}
    if not isinstance(extra, dict):
        raise ConfigError("eval.extra_decodings", f"expected a mapping of decoding -> eval overrides, got {extra!r}")
    for mode, over in extra.items():
        if mode not in decode.DECODINGS:
            raise ConfigError(f"eval.extra_decodings.{mode}", f"not a decoding (one of {', '.join(decode.DECODINGS)})")
        if mode == e.get("decoding", "visible"):
            raise ConfigError(f"eval.extra_decodings.{mode}", "is already eval.decoding")
        if over is not None and not isinstance(over, dict):
            raise ConfigError(f"eval.extra_decodings.{mode}", f"expected a mapping of eval keys, got {over!r}")
        bad = sorted(set(over or {}) - set(EXTRA_KEYS))
        if bad:
            raise ConfigError(f"eval.extra_decodings.{mode}.{bad[0]}", f"not a key an extra decoding can change "
                              f"(one of {', '.join(EXTRA_KEYS)})")
        decode.check(extra_config(e, mode))


def extra_config(e: dict, mode: str) -> dict:
    """The eval config of the extra pass with decoding ``mode``."""
    over = dict((e.get("extra_decodings") or {}).get(mode) or {})
    if "self_backtrack" in over:
        over["self_backtrack"] = {**(e.get("self_backtrack") or {}), **over["self_backtrack"]}
    return {**e, **over, "decoding": mode, "extra_decodings": {}, "tool_loop": {"enabled": False}}


def samples_file(mode: str | None) -> str:
    """samples.jsonl of the main evaluation, samples.<mode>.jsonl of an extra decoding."""
    return "samples.jsonl" if mode is None else f"samples.{mode}.jsonl"


def evaluate(model, tokenizer, records: list[dict], e: dict, run_dir: Path) -> dict:
    """Evaluate with ``eval.decoding`` (``samples.jsonl``), then the same checkpoint once more
    for each mode of ``eval.extra_decodings`` (``samples.<mode>.jsonl``; its metrics under
    ``metrics["decodings"][mode]``)."""
    check_extra(e)
    metrics = evaluate_one(model, tokenizer, records, e, run_dir / samples_file(None))
    extra = e.get("extra_decodings") or {}
    if extra:
        metrics["decodings"] = {}
        for mode in extra:
            print(f"evaluating again with eval.decoding={mode}")
            metrics["decodings"][mode] = evaluate_one(model, tokenizer, records, extra_config(e, mode),
                                                      run_dir / samples_file(mode))
    return metrics


def evaluate_one(model, tokenizer, records: list[dict], e: dict, samples_path: Path) -> dict:
    records = records[: e["n_problems"]] if e.get("n_problems") else records
    # eval.outcome_marker (a model SFT-trained with sft.outcome_marker): condition on success
    fmt = e.get("format") or "plain"  # eval.format (= data.format): the prompt's layout and where the answer is read
    prompts = [prompt_of(r["Question"], tokenizer, fmt) + (SUCCESS if e.get("outcome_marker") else "") for r in records]
    decoding = e.get("decoding", "visible")  # eval.decoding: visible | erase | self_backtrack (train/decode.py)
    decode.check(e)
    gen = dict(max_new_tokens=e["max_new_tokens"], batch_size=e["batch_size"], decoding=decoding,
               self_backtrack=e.get("self_backtrack"), fence=FORMAT_TAGS[fmt],
               erase_on_device=e.get("erase_on_device"))  # eval.erase_on_device (null: on a GPU)
    tool = e.get("tool_loop") or {}
    # eval.tool_loop: when every record's task declares the same TOOL (task=program: programs run in
    # the sandbox and their real output is inserted; train/toolloop.py)
    tools = {TASKS[r["task"]].TOOL if r["task"] in TASKS else None for r in records}
    tool_loop = bool(tool.get("enabled")) and len(tools) == 1 and None not in tools
    if tool_loop:
        from train import toolloop
        generate_ = functools.partial(toolloop.generate, tool=tools.pop())
        gen = dict(max_new_tokens=e["max_new_tokens"], batch_size=e["batch_size"],
                   max_rounds=tool["max_rounds"], timeout=tool["timeout"])
    else:
        generate_ = decode.generate
    t0 = time.perf_counter()
    greedy = generate_(model, tokenizer, prompts, num_return_sequences=1, do_sample=False, temperature=1.0, **gen)
    sampled = [[] for _ in records]
    if e["num_samples"]:
        sampled = generate_(model, tokenizer, prompts, num_return_sequences=e["num_samples"], do_sample=True,
                            temperature=e["temperature"], **gen)
    elapsed = time.perf_counter() - t0

    samples, greedy_rows, correct_counts = [], [], []
    for record, g, ss in zip(records, greedy, sampled):
        for mode, outputs in (("greedy", g), ("sample", ss)):
            c = 0
            for i, (text, n_tokens, *rounds) in enumerate(outputs):
                verdict = judge(text, record["puzzle"], record["task"], fmt)
                row = {"id": record["id"], "task": record["task"], "puzzle": record["puzzle"], "mode": mode,
                       "sample": i, "completion": text, "collapsed": verdict["collapsed"],
                       "answer": verdict["answer"], "correct": verdict["correct"],
                       "malformed": verdict["malformed"], "tokens": n_tokens,
                       "hit_limit": n_tokens >= e["max_new_tokens"]}
                if tool_loop:
                    row["tool_rounds"] = rounds[0]
                # all tokens this answer cost: self_backtrack's every sample of every round
                row["tokens_generated"] = rounds[0] if decoding == "self_backtrack" and rounds else n_tokens
                samples.append(row)
                c += row["correct"]
                if mode == "greedy":
                    greedy_rows.append(row)
            if mode == "sample":
                correct_counts.append(c)

    n = len(greedy_rows)
    metrics = {
        "accuracy": sum(r["correct"] for r in greedy_rows) / n,
        "n_problems": n,
        "split": e["split"],
        "mean_completion_tokens": sum(r["tokens"] for r in greedy_rows) / n,
        "mean_generated_tokens": sum(r["tokens_generated"] for r in greedy_rows) / n,
        "backspace_use": sum(BACKSPACE in r["completion"] or BACKTRACK_TOKEN in r["completion"]
                             for r in greedy_rows) / n,
        "malformed_rate": sum(r["malformed"] for r in greedy_rows) / n,
        "no_answer_rate": sum(r["answer"] is None for r in greedy_rows) / n,
        "loop_rate": sum(is_loop(r["completion"], r["hit_limit"]) for r in greedy_rows) / n,
        "num_samples": e["num_samples"],
        "decoding": decoding,
        "outcome_marker": bool(e.get("outcome_marker")),
        "eval_seconds": round(elapsed, 3),  # to the millisecond: gpu_study divides tokens by it
    }
    if decoding == "self_backtrack":
        metrics["self_backtrack"] = dict(e["self_backtrack"])
    if tool_loop:
        metrics["tool_loop"] = {"max_rounds": tool["max_rounds"], "timeout": tool["timeout"],
                                "mean_rounds": sum(r["tool_rounds"] for r in greedy_rows) / n}
    if e["num_samples"]:
        sample_rows = [r for r in samples if r["mode"] == "sample"]
        metrics["sample_accuracy"] = sum(r["correct"] for r in sample_rows) / len(sample_rows)
        metrics["mean_completion_tokens_sampled"] = sum(r["tokens"] for r in sample_rows) / len(sample_rows)
        metrics["mean_generated_tokens_sampled"] = sum(r["tokens_generated"] for r in sample_rows) / len(sample_rows)
        for k in e["k"]:
            if k <= e["num_samples"]:
                metrics[f"pass@{k}"] = float(np.mean([pass_at_k(e["num_samples"], c, k) for c in correct_counts]))
    with open(samples_path, "w", encoding="utf-8") as f:
        for row in samples:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return metrics
