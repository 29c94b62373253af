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

FORMATS = ("plain", "chat", "r1")
THINK, END_THINK = "<think>", "</think>"
FORMAT_TAGS = {"plain": (), "chat": (), "r1": (THINK, END_THINK)}  # text the format itself writes


def check_format(fmt: str, tokenizer=None) -> None:
    """Refuse an unknown ``data.format``, or chat/r1 with a tokenizer that has no chat template."""
    if fmt not in FORMATS:
        raise ConfigError("data.format", f"must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt != "plain" and tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("data.format", f"data.format={fmt} prompts through the checkpoint's chat template, and "
                          "this tokenizer has none (tokenizer=char never has one: use data.format=plain, or "
                          "model=hf tokenizer=checkpoint with an instruct or R1 checkpoint)")


def prompt_of(question: str, tokenizer=None, fmt: str = "plain") -> str:
    """What the model is given; the completion follows. ``plain``: the question and a
    newline. ``chat`` and ``r1``: the checkpoint's chat template with the question as the
    user's turn, up to where the assistant's turn begins (for DeepSeek-R1's template that
    already holds the opening ``<think>``).

    >>> prompt_of("Make 10 from 2, 5.")
    'Make 10 from 2, 5.\\n'
    """
    if fmt == "plain":
        return question + "\n"
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def split_answer(reasoning: str) -> tuple[str, str]:
    """(the work, the final answer line) of a raw Reasoning: the answer part starts at the
    first character that stays on the last line of the page. The two collapse on their own
    (nothing after that character erases anything before it). ("", reasoning) when the page
    does not end with an ``Answer:`` line.

    >>> split_answer("2 + 2 = 5\\n\\b\\b\\b\\b\\b\\b2 + 3 = 5\\nAnswer: 2 + 3")
    ('2 + 2 = 5\\n\\x08\\x08\\x08\\x08\\x08\\x082 + 3 = 5\\n', 'Answer: 2 + 3')
    """
    from solvers.trace import _apply
    page, _ = _apply(reasoning)
    text = "".join(reasoning[i] for i in page)
    start = text.rfind("\n") + 1
    if not text[start:].startswith(ANSWER_PREFIX):
        return "", reasoning
    cut = page[start]
    return reasoning[:cut], reasoning[cut:]


def completion_of(reasoning: str, fmt: str = "plain", prompt: str = "") -> str:
    """The text the model learns to write after ``prompt``. ``plain`` and ``chat``: the
    Reasoning. ``r1``: the work, backspaces included, inside ``<think>`` ... ``</think>``, then
    the ``Answer:`` line, as R1-distilled models write (the ``<think>`` is left out when the
    prompt already ends with it).

    >>> completion_of("1 + 2 = 3\\nAnswer: 1 + 2", "r1")
    '<think>\\n1 + 2 = 3\\n</think>\\n\\nAnswer: 1 + 2'
    """
    if fmt != "r1":
        return reasoning
    work, answer = split_answer(reasoning)
    if work and not work.endswith("\n"):
        work += "\n"
    opened = prompt.rstrip().endswith(THINK)
    return ("" if opened else THINK + "\n") + (work or "\n") + END_THINK + "\n\n" + answer


def _segments(text: str, fmt: str) -> list[tuple[str, str]]:
    """``text`` cut at the format's own tags: [(tag before the piece, piece)], the first with tag ""."""
    if fmt != "r1":
        return [("", text)]
    out, rest, tag = [], text, ""
    i = rest.find(THINK)
    if i >= 0 and not rest[:i].strip() and rest.find(END_THINK) > i:  # the completion opens the block itself
        out.append((tag, rest[:i]))
        tag, rest = THINK, rest[i + len(THINK):]
    j = rest.find(END_THINK)
    if j >= 0:
        out.append((tag, rest[:j]))
        tag, rest = END_THINK, rest[j + len(END_THINK):]
    out.append((tag, rest))
    return out


def read_completion(text: str, fmt: str = "plain") -> tuple[str, str]:
    """(the collapsed completion, the collapsed part the answer is read from). ``r1``: the
    answer is read after ``</think>`` only (none without it). A backspace or marker never
    erases the format's own tags: each piece between them collapses on its own, and one that
    erases more than it holds raises ``MalformedTrace`` naming the tag.

    >>> read_completion("<think>\\nx\\n</think>\\n\\nAnswer: 3", "r1")
    ('<think>\\nx\\n</think>\\n\\nAnswer: 3', '\\n\\nAnswer: 3')
    >>> read_completion("<think>\\nx\\n</think>\\b\\bAnswer: 3", "r1")
    Traceback (most recent call last):
    ...
    solvers.trace.MalformedTrace: erases_across_tag: an erasure after </think> reaches back over it (backspace at character 0 has nothing left to erase)
    """
    pages = []
    for tag, piece in _segments(text, fmt):
        try:
            pages.append((tag, collapse(piece)))
        except MalformedTrace as e:
            if not tag:
                raise
            raise MalformedTrace(f"erases_across_tag: an erasure after {tag} reaches back over it ({e})") from None
    whole = "".join(tag + page for tag, page in pages)
    if fmt == "r1":
        return whole, pages[-1][1] if pages[-1][0] == END_THINK else ""
    return whole, whole


def format_erased_mask(text: str, fmt: str = "plain") -> list[bool]:
    """``solvers.trace.erased_mask`` through the format: the tags are never erased, each piece
    between them is masked on its own (MalformedTrace when an erasure crosses a tag)."""
    read_completion(text, fmt)  # raises with the named reason
    mask: list[bool] = []
    for tag, piece in _segments(text, fmt):
        mask += [False] * len(tag) + erased_mask(piece)
    return mask


def check_record_format(record: dict, fmt: str) -> str | None:
    """The reason a record cannot be written in ``fmt``, or None: ``format_tag_in_reasoning``
    when its Reasoning already holds one of the format's tags (task=program's <think> lines
    under r1), ``erases_across_tag`` when the formatted text erases over a tag."""
    if any(tag in record["Reasoning"] for tag in FORMAT_TAGS[fmt]):
        return "format_tag_in_reasoning"
    try:
        read_completion(completion_of(record["Reasoning"], fmt), fmt)
    except MalformedTrace as e:
        return "erases_across_tag" if str(e).startswith("erases_across_tag") else "malformed_backspaces"
    return None


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


def sft_example(record: dict, tokenizer, mask_erased: bool, marker: str = "", fmt: str = "plain") -> dict:
    """Token ids of prompt + completion + EOS, and the mask of the tokens that count in the
    loss: the completion, less (with ``mask_erased``) every token whose characters are all
    erased later. The backspaces themselves always count: the model must learn to type them.
    ``marker`` (``sft.outcome_marker``: ``<success>`` or ``<failure>``) ends the prompt, so it
    conditions the completion and is never itself in the loss.

    ``fmt`` (``data.format``) lays prompt and completion out (``prompt_of``, ``completion_of``).

    Works with any fast tokenizer, through its character offsets.
    """
    reason = check_record_format(record, fmt) if fmt != "plain" else None
    if reason:
        raise ConfigError("data.format", f"record {record.get('id')} cannot be written as data.format={fmt}: {reason}")
    prompt = prompt_of(record["Question"], tokenizer, fmt)
    completion = completion_of(record["Reasoning"], fmt, prompt)
    prompt += marker
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    enc = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
    c_ids = enc["input_ids"]
    keep = [1] * len(c_ids)
    if mask_erased:
        try:
            erased = format_erased_mask(completion, fmt)
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


def check_run_format(c: dict, tokenizer, records: list[dict]) -> None:
    """Refuse a ``data.format`` the run cannot use, before training: an unknown one, chat/r1
    without a chat template, ``improve`` (it keeps raw completions as plain Reasoning) with
    anything but plain, and records that cannot be written in the format (their reason named)."""
    fmt = c["data"].get("format", "plain")
    check_format(fmt, tokenizer)
    if fmt != "plain" and (c.get("improve") or {}).get("enabled"):
        raise ConfigError("data.format", f"improve.enabled keeps raw completions as plain Reasoning; it runs with "
                          f"data.format=plain only, not {fmt}")
    if fmt == "plain":
        return
    for record in records:
        reason = check_record_format(record, fmt)
        if reason:
            raise ConfigError("data.format", f"record {record.get('id')} cannot be written as data.format={fmt}: "
                              f"{reason}" + (f" (its Reasoning holds {' or '.join(FORMAT_TAGS[fmt])} itself)"
                                             if reason == "format_tag_in_reasoning" else ""))
