"""Tool-loop evaluation (``eval.tool_loop``) for a task that declares a ``TOOL``
(``solvers.task.Tool``; task=program: the model's programs really run).

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
from solvers.task import Tool



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


class _Closes:
    """A StoppingCriteria: a row is done once the text it generated since ``start`` holds
    ``close`` (``</program>``). Decodes only the last few tokens of each row (each token is at
    least one character, so 2 x len(close) tokens always hold a just-written one)."""

    def __init__(self, tokenizer, start: int, close: str) -> None:
        self.tokenizer, self.start, self.close = tokenizer, start, close

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        lo = max(self.start, input_ids.shape[1] - 2 * len(self.close))
        tails = self.tokenizer.batch_decode(input_ids[:, lo:], skip_special_tokens=True)
        return torch.tensor([self.close in t for t in tails], dtype=torch.bool, device=input_ids.device)


@dataclass
class _Row:
    prompt: str
    text: str = ""       # completion so far, inserted outputs included
    tokens: int = 0      # tokens the model generated
    rounds: int = 0
    done: bool = False
    pending: list = field(default_factory=list)


def generate(model, tokenizer, prompts: list[str], *, tool: Tool, num_return_sequences: int, do_sample: bool,
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
                _step(model, tokenizer, tool, group[start:start + batch_size], may_stop, do_sample, temperature,
                      max_new_tokens, timeout, special, torch, StoppingCriteriaList)
    k = num_return_sequences
    flat = [(r.text, r.tokens, r.rounds) for r in rows]
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def _step(model, tokenizer, tool, batch, may_stop, do_sample, temperature, max_new_tokens, timeout, special, torch,
          StoppingCriteriaList) -> None:
    """One ``model.generate`` call over ``batch``; then run the programs closed in it."""
    budget = [max_new_tokens - r.tokens for r in batch]
    enc = tokenizer([r.prompt + r.text for r in batch], return_tensors="pt", padding=True,
                    add_special_tokens=False).to(model.device)
    width = enc["input_ids"].shape[1]
    stop = StoppingCriteriaList([_Closes(tokenizer, width, tool.close)]) if may_stop else None
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
        if may_stop and tool.close in piece:
            # the stopping criterion ended the row at the token that completed </program>; what a
            # subword token held beyond it (say "</program>\n") is dropped: the output block follows
            r.text += piece[:piece.index(tool.close) + len(tool.close)]
            r.tokens += len(ids[:end])
            code = tool.pending(r.text)
            if code is not None:
                to_run.append((r, code))
            r.done = r.tokens >= max_new_tokens
            continue
        r.text += piece
        r.tokens += len(ids) if end is None else end + 1  # the EOS counts, as in train.decode.hf_generate
        r.done = True  # an EOS, or the budget is spent
    if to_run:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outputs = list(pool.map(lambda rc: tool.run(rc[1], timeout), to_run))
        for (r, _), out in zip(to_run, outputs):
            r.text += out
            r.rounds += 1
