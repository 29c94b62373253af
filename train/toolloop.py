"""Tool-loop evaluation for ``task=program`` (``eval.tool_loop``): the model's programs really run.

In training every ``<output>`` block is what the sandbox printed; in plain evaluation the
model writes its own ``<output>``, so it can "see" any number it likes. With the tool loop,
generation stops when the model closes a ``</program>`` block; the program, read from the
collapsed text exactly as ``solvers.program.programs`` reads it (the last block, which has no
output yet), runs in the sandbox (``eval.tool_loop.timeout`` seconds, 256 MB, at most
``MAX_OUTPUT`` bytes kept), and ``\\n<output>\\n<lines>\\n</output>\\n`` (the lines as
``solvers.program.shown`` gives them, the format of the training traces) is appended to the
context before the model continues. After ``max_rounds`` rounds ``</program>`` no longer
stops it: the model must finish on its own (and any ``<output>`` it writes then is its own).

What is returned, per prompt, is a list of (completion, generated tokens, rounds): the
completion is the full text after the prompt *with the inserted outputs*, so judging,
``collapse`` and ``samples.jsonl`` see what the model saw. Generated tokens count only what
the model wrote (inserted outputs are free), and ``max_new_tokens`` is the budget summed over
all rounds. Each round re-encodes prompt + text so far (no KV cache kept between rounds):
exact with the char tokenizer; a subword tokenizer may split the joined text differently
from how it was generated. A block that cannot be read (a malformed stream, a
``</program>`` not on a line of its own, no ``<program>`` line) runs nothing, inserts
nothing and costs no round; the model just goes on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from solvers.config import check_int_range
from solvers.trace import MalformedTrace, collapse

CLOSE = "</program>"
MAX_OUTPUT = 1024  # bytes of a run's output kept (first and last half): a runaway print must not fill the context


def check(e: dict) -> None:
    """Refuse a bad ``eval.tool_loop``, naming the key."""
    from solvers.config import ConfigError

    t = e.get("tool_loop") or {}
    if not t.get("enabled"):
        return
    check_int_range("eval.tool_loop.max_rounds", t.get("max_rounds"), 0)
    timeout = t.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise ConfigError("eval.tool_loop.timeout", f"must be seconds in (0, 60], got {timeout!r}")
    if e.get("decoding", "visible") != "visible":
        raise ConfigError("eval.tool_loop.enabled", "the tool loop runs on model.generate: it needs "
                          f"eval.decoding=visible, got {e.get('decoding')!r}")


def insertion(code: str, timeout: float) -> str:
    """What is appended after ``</program>``: the real output block of ``code``.

    >>> insertion("print(6 * 7)", 5)
    '\\n<output>\\n42\\n</output>\\n'
    >>> insertion("pass", 5)
    '\\n<output>\\n</output>\\n'
    """
    from solvers import program, sandbox

    lines = program.shown(sandbox.run(code, timeout=timeout, memory_mb=program.MEMORY_MB, max_output=MAX_OUTPUT))
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
    from solvers import program

    try:
        page = collapse(completion)
    except MalformedTrace:
        return None
    if not page.rstrip().endswith(CLOSE) or page.rstrip().rsplit("\n", 1)[-1].strip() != CLOSE:
        return None
    found = program.programs(page)
    if not found or found[-1][1] is not None:
        return None
    return found[-1][0]


class _ClosesProgram:
    """A StoppingCriteria: a row is done once the text it generated since ``start`` holds
    ``</program>``. Decodes only the last few tokens of each row (each token is at least one
    character, so 2 x len(CLOSE) tokens always hold a just-written ``</program>``)."""

    def __init__(self, tokenizer, start: int) -> None:
        self.tokenizer, self.start = tokenizer, start

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        lo = max(self.start, input_ids.shape[1] - 2 * len(CLOSE))
        tails = self.tokenizer.batch_decode(input_ids[:, lo:], skip_special_tokens=True)
        return torch.tensor([CLOSE in t for t in tails], dtype=torch.bool, device=input_ids.device)


@dataclass
class _Row:
    prompt: str
    text: str = ""       # completion so far, inserted outputs included
    tokens: int = 0      # tokens the model generated
    rounds: int = 0
    done: bool = False
    pending: list = field(default_factory=list)


def generate(model, tokenizer, prompts: list[str], *, num_return_sequences: int, do_sample: bool,
             temperature: float, max_new_tokens: int, batch_size: int, max_rounds: int,
             timeout: float) -> list[list[tuple[str, int, int]]]:
    """For each prompt, ``num_return_sequences`` (completion with inserted outputs, generated
    tokens, tool rounds). Rows are independent (a sampled row is its own run); each call of
    ``model.generate`` takes up to ``batch_size`` rows that still run."""
    import torch
    from transformers import StoppingCriteriaList

    tokenizer.padding_side = "left"
    model.eval()
    rows = [_Row(p) for p in prompts for _ in range(num_return_sequences)]
    special = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    while True:
        active = [r for r in rows if not r.done]
        if not active:
            break
        # rows that may still stop at </program> and rows that must finish go in separate calls
        for may_stop in (True, False):
            group = [r for r in active if (r.rounds < max_rounds) == may_stop]
            for start in range(0, len(group), batch_size):
                _step(model, tokenizer, group[start:start + batch_size], may_stop, do_sample, temperature,
                      max_new_tokens, timeout, special, torch, StoppingCriteriaList)
    k = num_return_sequences
    flat = [(r.text, r.tokens, r.rounds) for r in rows]
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def _step(model, tokenizer, batch, may_stop, do_sample, temperature, max_new_tokens, timeout, special, torch,
          StoppingCriteriaList) -> None:
    """One ``model.generate`` call over ``batch``; then run the programs closed in it."""
    budget = [max_new_tokens - r.tokens for r in batch]
    enc = tokenizer([r.prompt + r.text for r in batch], return_tensors="pt", padding=True,
                    add_special_tokens=False).to(model.device)
    width = enc["input_ids"].shape[1]
    stop = StoppingCriteriaList([_ClosesProgram(tokenizer, width)]) if may_stop else None
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=max(budget), do_sample=do_sample,
                             temperature=temperature if do_sample else None, top_p=None, top_k=None,
                             stopping_criteria=stop, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    to_run = []
    for r, ids, left in zip(batch, gen[:, width:].tolist(), budget):
        ids = ids[:left]
        end = next((i for i, t in enumerate(ids) if t in special), None)
        piece = tokenizer.decode(ids[:end], skip_special_tokens=True)
        if may_stop and CLOSE in piece:
            # the stopping criterion ended the row at the token that completed </program>; what a
            # subword token held beyond it (say "</program>\n") is dropped: the output block follows
            r.text += piece[:piece.index(CLOSE) + len(CLOSE)]
            r.tokens += len(ids[:end])
            code = pending_program(r.text)
            if code is not None:
                to_run.append((r, code))
            r.done = r.tokens >= max_new_tokens
            continue
        r.text += piece
        r.tokens += len(ids) if end is None else end + 1  # the EOS counts, as in train.evaluate.generate
        r.done = True  # an EOS, or the budget is spent
    if to_run:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outputs = list(pool.map(lambda rc: insertion(rc[1], timeout), to_run))
        for (r, _), out in zip(to_run, outputs):
            r.text += out
            r.rounds += 1
