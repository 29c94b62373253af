"""The training data: a generated dataset on disk, read into prompt/completion rows.

``data.path=DIR`` reads a dataset ``python -m generate`` wrote. Without it, the dataset the
``data`` config describes is generated once into ``data.cache_dir/<hash of its config>``
and reused by every later run with the same data config.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from solvers import TASKS
from solvers.config import ConfigError
from solvers.trace import ANSWER_PREFIX, MalformedTrace, collapse, erased_mask

def prompt_of(question: str) -> str:
    """What the model is given: the question and a newline; the Reasoning follows."""
    return question + "\n"


def generate_config(data: dict) -> dict:
    """The ``python -m generate`` config that makes the dataset ``data`` describes."""
    from conf import compose_generate

    if data["task"] not in TASKS:
        raise ConfigError("data.task", f"must be one of {', '.join(TASKS)}; got {data['task']!r}")
    base = compose_generate([f"task={data['task']}"])
    task = base["task"]
    options = data.get("task_options") or {}
    for name in options:
        if name not in TASKS:
            raise ConfigError(f"data.task_options.{name}", "task_options is keyed by task name, e.g. "
                              "data.task_options.countdown.n_numbers=4; "
                              f"known tasks: {', '.join(TASKS)}")
    task.update(options.get(data["task"]) or {})  # only the options of the task being trained
    base.update(task=task, paraphraser={"name": data["paraphraser"]}, style=data["style"],
                n=data["n"], n_val=data["n_val"], n_test=data["n_test"], seed=data["seed"],
                max_chars=data["max_chars"], progress=True, workers=None,
                **{k: data[k] for k in ("mix", "think", "notes", "slips", "human", "human_ratio", "human_repeat")
                   if k in data})
    base["n_test_unseen"] = data.get("n_test_unseen", 0)
    digest = hashlib.sha256(json.dumps({k: v for k, v in base.items() if k not in ("out", "workers", "progress")},
                                       sort_keys=True).encode()).hexdigest()[:16]
    base["out"] = str(Path(data["cache_dir"]) / f"{data['task']}-{data['style']}-{digest}")
    return base


def dataset_dir(data: dict) -> Path:
    """The dataset directory, generating it first when needed."""
    if data.get("path"):
        path = Path(data["path"])
        if not path.is_dir():
            raise ConfigError("data.path", f"no such directory: {path}")
        if not any(path.glob("*/shard-*.jsonl")):
            raise ConfigError("data.path", f"{path} holds no records (expected {path}/<split>/shard-*.jsonl)")
        return path
    from generate import pipeline
    out, _ = pipeline.run(generate_config(data))
    return out


def read_split(path: Path, split: str) -> list[dict]:
    records = []
    for shard in sorted((path / split).glob("shard-*.jsonl")):
        with open(shard, encoding="utf-8") as f:
            records.extend(json.loads(line) for line in f)
    return records


def sft_example(record: dict, tokenizer, mask_erased: bool, marker: str = "") -> dict:
    """Token ids of prompt + completion + EOS, and the mask of the tokens that count in the
    loss: the completion, less (with ``mask_erased``) every token whose characters are all
    erased later. The backspaces themselves always count: the model must learn to type them.
    ``marker`` (``sft.outcome_marker``: ``<success>`` or ``<failure>``) ends the prompt, so it
    conditions the completion and is never itself in the loss.

    Works with any fast tokenizer, through its character offsets.
    """
    prompt = prompt_of(record["Question"]) + marker
    completion = record["Reasoning"]
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    enc = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
    c_ids = enc["input_ids"]
    keep = [1] * len(c_ids)
    if mask_erased:
        try:
            erased = erased_mask(completion)
        except MalformedTrace as e:
            raise ConfigError("data", f"record {record.get('id')}: {e}") from None
        for i, (start, end) in enumerate(enc["offset_mapping"]):
            if end > start and all(erased[start:end]):
                keep[i] = 0
    return {
        "input_ids": p_ids + c_ids + [tokenizer.eos_token_id],
        "completion_mask": [0] * len(p_ids) + keep + [1],
    }


def _wrong(answer: str, rng: random.Random) -> str:
    """``answer`` with one integer in it moved by 1 to 9 (the whole answer when it is one)."""
    whole = re.fullmatch(r"\s*-?\d+\s*", answer) is not None
    spans = [m.span() for m in re.finditer(r"-?\d+" if whole else r"\d+", answer)]
    if not spans:
        return answer + "1"
    a, b = rng.choice(spans)
    value, step = int(answer[a:b]), rng.randint(1, 9)
    value = value - step if rng.random() < 0.5 and (whole or value - step >= 0) else value + step
    return answer[:a] + str(value) + answer[b:]  # in an expression, numbers stay non-negative


def failed_chain(record: dict) -> str | None:
    """The failed chain for ``sft.outcome_marker``: the record's own Reasoning (backspaces
    and all) whose final answer is made wrong: one integer of the ``Answer:`` line moved by
    1 to 9 (seeded by the record id), and for the program task's ``<boxed>N</boxed>`` line
    just above it the same value. The work above it is the correct chain's, so the pair
    teaches what separates success from failure only at the end: the answer must agree
    with the work. None when the raw text does not end in the plain answer line(s), or no
    wrong answer was found in 5 draws (the verifier must reject it).

    >>> r = {"id": "x", "task": "countdown", "puzzle": {"numbers": [2, 3, 4], "target": 20},
    ...      "Reasoning": "2 + 3 = 5\\n5 * 4 = 20\\nAnswer: (2 + 3) * 4"}
    >>> failed_chain(r)
    '2 + 3 = 5\\n5 * 4 = 20\\nAnswer: (2 + 5) * 4'
    >>> p = {"id": "y", "task": "program", "puzzle": {"family": "multiples", "a": 3, "b": 5, "limit": 10},
    ...      "Reasoning": "<program>\\nprint(23)\\n</program>\\n<output>\\n23\\n</output>\\n<boxed>23</boxed>\\nAnswer: 23"}
    >>> failed_chain(p)[-29:]
    '\\n<boxed>16</boxed>\\nAnswer: 16'
    """
    from solvers import verifier

    raw = record["Reasoning"]
    try:
        last = collapse(raw).rsplit("\n", 1)[-1]
    except MalformedTrace:
        return None
    if not last.startswith(ANSWER_PREFIX) or not ("\n" + raw).endswith("\n" + last):
        return None
    answer = last[len(ANSWER_PREFIX):].strip()
    boxed = f"<boxed>{answer}</boxed>\n"
    head = raw[:len(raw) - len(last)]
    has_box = head.endswith("\n" + boxed) or head == boxed
    if has_box:
        head = head[:len(head) - len(boxed)]
    rng = random.Random(f"failure/{record.get('id')}")
    check = verifier(record["task"])
    for _ in range(5):
        wrong = _wrong(answer, rng)
        if wrong != answer and not check(record["puzzle"], wrong):
            return head + (f"<boxed>{wrong}</boxed>\n" if has_box else "") + ANSWER_PREFIX + wrong
    return None


def puzzle_column(record: dict) -> str:
    # One JSON string per row: puzzles of different tasks have different shapes, and
    # an Arrow column needs one.
    return json.dumps(record["puzzle"])
