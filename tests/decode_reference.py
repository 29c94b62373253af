# A frozen copy of train/decode.py at commit 3112027, before continuous batching: the reference
# that tests/test_decode_batching.py and `benchmarks.decode_bench --reference` hold today's loops
# to (the same greedy tokens). Not imported by the project; do not edit.
"""How a model's completions are decoded at evaluation: ``eval.decoding``.

- ``visible`` (default): ``model.generate``. Backspaces and ``<backtrack>`` markers stay in
  the context: the model reads its own dead ends, as it did in training.
- ``erase``: our own batched loop with a KV cache. When the model emits an erasing token
  (U+0008 or ``<backtrack>``) the erased tokens leave the context *and* the cache, so the
  model continues from the collapsed text, as if the dead end had never been typed (only a
  note it kept remembers it). The completion returned is still the raw stream, backspaces
  included, so judging and ``collapse`` work unchanged.
- ``self_backtrack``: Self-Backtracking's decoder (Yang et al., 2025), on top of ``erase``:
  sample ``n`` continuations from the kept prefix; a continuation that abandons a whole
  step (a ``<backtrack>`` marker, or backspaces erasing back over a newline to a line
  start) stops there, and the best such state (mean token log-probability) is expanded
  again by ``n`` fresh samples, up to ``b`` times; in the last round backtracks no longer
  stop a sample. Every completion that finished becomes a candidate and one is returned,
  chosen by ``score``: ``logprob`` (mean token log-probability of the raw stream) or
  ``majority`` (the most common answer, ties and the pick among equals by log-probability).
  At most ``n * (b + 1)`` completions per returned one; it always samples (the greedy
  row of the evaluation is one such run at temperature 1).

Which tokens leave the context. Each sequence keeps the list of its kept completion token
ids. An erasing token is applied to the kept *text* (``_erase``: the rules of
``solvers.trace.collapse``, except that an erasure with nothing to erase erases nothing
here; the stream is judged malformed later anyway). Then the kept ids are popped from the
end until their decoded text is a prefix of the new kept text, and whatever of the new text
is left over (a multi-character token half erased, say ``"16"`` by one backspace) is
re-encoded on its own. With the char tokenizer (one token per character) nothing is ever
re-encoded and the collapse is exact; with a subword tokenizer the re-encoded remainder may
split differently from how the model would have written it. A ``<backtrack>`` written as
several tokens is caught at the token that completes it.

How the cache follows. All sequences of a batch share one ``DynamicCache`` of shape
[batch, heads, slots, dim] and a boolean ``live`` mask over the slots, passed as the
attention mask. An erasure marks the erased slots dead, and the slot of the last kept token
too, which is fed again so that the next token's logits come from the collapsed context
(positions are counted over live slots, so every kept token keeps the position it had and
the re-fed one gets its old one back). Then the cache is compacted: one ``gather`` per
layer moves each row's live slots to the right, left padding the shorter rows, and drops
columns no row uses; finished rows leave the batch. So a row's cache holds exactly its
prompt and kept tokens (plus left padding), the attention is the same as a fresh forward
over the collapsed text, and no prefix is ever recomputed. Layers other than
``DynamicLayer`` (sliding windows, quantized caches) are refused.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field, replace

from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import BACKSPACE, BACKTRACK_TOKEN, MalformedTrace, collapse, final_answer

DECODINGS = ("visible", "erase", "self_backtrack")
SCORES = ("logprob", "majority")


def check(e: dict) -> None:
    """Refuse a bad ``eval.decoding`` or ``eval.self_backtrack``, naming the key."""
    check_choice("eval.decoding", e.get("decoding", "visible"), DECODINGS)
    if e.get("decoding") == "self_backtrack":
        sb = e.get("self_backtrack") or {}
        check_int_range("eval.self_backtrack.n", sb.get("n"), 1)
        check_int_range("eval.self_backtrack.b", sb.get("b"), 0)
        check_choice("eval.self_backtrack.score", sb.get("score"), SCORES)
    if (e.get("tool_loop") or {}).get("enabled"):
        from train import toolloop
        toolloop.check(e)  # eval.tool_loop (task=program): refused before training, not after


def generate(model, tokenizer, prompts: list[str], *, num_return_sequences: int, do_sample: bool,
             temperature: float, max_new_tokens: int, batch_size: int, decoding: str = "visible",
             self_backtrack: dict | None = None) -> list[list[tuple[str, int]]]:
    """For each prompt, ``num_return_sequences`` (raw completion text, completion tokens):
    the same shape as ``train.decode.hf_generate``, whatever the decoding. Tokens count
    what was generated, erased tokens and the final EOS included. ``self_backtrack`` adds a
    third element: the tokens generated by the whole run, every sample of every round (the
    test-time compute of that one answer)."""
    check({"decoding": decoding, "self_backtrack": self_backtrack})
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not ids for ids in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    model.eval()
    if decoding == "visible" and not getattr(model.generation_config, "use_cache", True):
        from train.decode import hf_generate  # our loop needs a KV cache; this model has none
        return hf_generate(model, tokenizer, prompts, num_return_sequences=num_return_sequences, do_sample=do_sample,
                           temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if decoding in ("visible", "erase"):  # visible: the loop without erasing, model.generate's stream (tested)
        rows = [_Row(ids) for ids in prompt_ids for _ in range(num_return_sequences)]
        _run_batches(model, tokenizer, rows, do_sample=do_sample, temperature=temperature,
                     max_new_tokens=max_new_tokens, batch_size=batch_size, erase=decoding == "erase")
        flat = [(tokenizer.decode(r.raw_ids, skip_special_tokens=True), len(r.raw_ids)) for r in rows]
        k = num_return_sequences
        return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]
    sb = self_backtrack
    runs = [ids for ids in prompt_ids for _ in range(num_return_sequences)]  # independent runs
    chosen, spent = _self_backtrack(model, tokenizer, runs, n=sb["n"], b=sb["b"], score=sb["score"],
                                    temperature=temperature if do_sample else 1.0,
                                    max_new_tokens=max_new_tokens, batch_size=batch_size)
    flat = [(tokenizer.decode(r.raw_ids, skip_special_tokens=True), len(r.raw_ids), g)
            for r, g in zip(chosen, spent)]
    k = num_return_sequences
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


# ----------------------------------------------------------------------------- erasing text

def _erase(kept: str, piece: str) -> tuple[str, int, bool]:
    """Type ``piece`` after ``kept`` (a text with no erasures in it): the new kept text, the
    number of newlines erased, and whether anything in ``piece`` erased. The rules of
    ``collapse``, except that an erasure with nothing to erase does nothing.

    >>> _erase("12+3=16", "\\b\\b15")
    ('12+3=15', 0, True)
    >>> _erase("a\\nb\\n", "<backtrack>")
    ('a\\n', 1, True)
    >>> _erase("a\\nb\\n<backtr", "ack>x")   # a marker completed by this piece
    ('a\\nx', 1, True)
    >>> _erase("", "\\b") , _erase("ab", "c")
    (('', 0, True), ('abc', 0, False))
    """
    start = max(0, len(kept) - len(BACKTRACK_TOKEN) + 1)  # a marker may begin in kept's tail
    text = kept + piece
    if BACKSPACE not in piece and BACKTRACK_TOKEN not in text[start:]:
        return text, 0, False
    page = list(text[:start])
    newlines = 0
    i = start
    while i < len(text):
        if text[i] == BACKSPACE:
            if page:
                newlines += page.pop() == "\n"
            i += 1
        elif text.startswith(BACKTRACK_TOKEN, i):
            if page and page[-1] == "\n":
                page.pop()
                newlines += 1
                while page and page[-1] != "\n":
                    page.pop()
            i += len(BACKTRACK_TOKEN)
        else:
            page.append(text[i])
            i += 1
    return "".join(page), newlines, True


@dataclass
class _Row:
    """One sequence being decoded: its prompt (never erased), the completion tokens still
    on the page, and every token generated."""
    prompt_ids: list[int]
    kept_ids: list[int] = field(default_factory=list)
    kept_pieces: list[str] = field(default_factory=list)  # decode([id]) of each kept id
    raw_ids: list[int] = field(default_factory=list)
    logprob: float = 0.0            # sum of log p(token) over raw_ids, at temperature 1
    done: bool = False
    backtracked: bool = False       # stopped by a whole-step backtrack (self_backtrack)
    run_newlines: int = 0           # newlines erased by the current run of erasing tokens

    def fork(self) -> "_Row":
        return replace(self, kept_ids=list(self.kept_ids), kept_pieces=list(self.kept_pieces),
                       raw_ids=list(self.raw_ids), done=False, backtracked=False, run_newlines=0)

    def kept_text(self, tokenizer) -> str:
        return tokenizer.decode(self.kept_ids)

    def mean_logprob(self) -> float:
        return self.logprob / max(1, len(self.raw_ids))


def _apply_erasure(row: _Row, piece: str, tokenizer) -> tuple[int, list[int]] | None:
    """Apply an erasing token to ``row``'s kept tokens. Returns (kept ids that survive,
    re-encoded remainder ids), or None when ``piece`` erases nothing (an ordinary token)."""
    if BACKSPACE not in piece and ">" not in piece:  # the cheap test: no erasure can end here
        return None
    old = tokenizer.decode(row.kept_ids)
    new, newlines, erasing = _erase(old, piece)
    if not erasing:
        return None
    row.run_newlines += newlines
    k = len(row.kept_ids)
    length = sum(len(p) for p in row.kept_pieces)
    while k and length > len(new):      # fast guess from the pieces' lengths ...
        k -= 1
        length -= len(row.kept_pieces[k])
    while k and not new.startswith(tokenizer.decode(row.kept_ids[:k])):  # ... made exact
        k -= 1
    rest = new[len(tokenizer.decode(row.kept_ids[:k])):] if k else new
    extra = tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
    return k, extra


# ----------------------------------------------------------------------------- the loop

def _cache_kwarg(model) -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache``."""
    params = inspect.signature(model.forward).parameters
    if "cache" in params:
        return "cache"
    if "past_key_values" in params:
        return "past_key_values"
    from transformers.modeling_outputs import CausalLMOutputWithPast
    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _run_batches(model, tokenizer, rows: list[_Row], *, batch_size: int, **kw) -> None:
    for start in range(0, len(rows), batch_size):
        _run(model, tokenizer, rows[start:start + batch_size], **kw)


def _run(model, tokenizer, rows: list[_Row], *, do_sample: bool, temperature: float, max_new_tokens: int,
         erase: bool = True, stop_on_backtrack: bool = False) -> None:
    """Decode ``rows`` (in place) until EOS or ``max_new_tokens`` raw tokens each; each row
    starts from its prompt and kept tokens. ``erase=False`` is plain decoding (the same
    stream as ``model.generate``: used by the tests to check this loop)."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    device = model.device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    cache_key = _cache_kwarg(model)
    cache = DynamicCache(config=model.config) if _accepts_config(DynamicCache) else DynamicCache()

    def forward(ids, live, positions):
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=live.long(), position_ids=positions,
                        use_cache=True, **{cache_key: cache})
        return out.logits[:, -1, :].float()

    active = [r for r in rows if not r.done and len(r.raw_ids) < max_new_tokens]
    for r in rows:
        if r not in active:
            r.done = True
    if not active:
        return
    contexts = [r.prompt_ids + r.kept_ids for r in active]
    width = max(map(len, contexts))
    ids = torch.full((len(active), width), pad, dtype=torch.long)
    live = torch.zeros((len(active), width), dtype=torch.bool)
    for j, c in enumerate(contexts):
        ids[j, width - len(c):] = torch.tensor(c)
        live[j, width - len(c):] = True
    ids, live = ids.to(device), live.to(device)
    logits = forward(ids, live, (live.long().cumsum(1) - 1).clamp(min=0))
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        raise NotImplementedError("eval.decoding=erase needs a plain DynamicCache (no sliding-window or "
                                  "quantized layers); use eval.decoding=visible for this model")

    pieces: dict[int, str] = {}  # decode([id]), once per id
    while active:
        logp = torch.log_softmax(logits, dim=-1)
        if do_sample:
            probs = torch.softmax(logits / temperature, dim=-1)
            chosen = torch.multinomial(probs, num_samples=1).squeeze(1)
        else:
            chosen = logits.argmax(dim=-1)
        chosen_lp = logp.gather(1, chosen[:, None]).squeeze(1).tolist()
        chosen = chosen.tolist()

        keep, drops, feeds = [], [], []
        for j, r in enumerate(active):
            t = chosen[j]
            if t not in pieces:
                pieces[t] = tokenizer.decode([t]) if t != eos else ""
            piece = pieces[t]
            erased = _apply_erasure(r, piece, tokenizer) if erase and t != eos else None
            if stop_on_backtrack and erased is None and r.run_newlines and t != eos:
                text = r.kept_text(tokenizer)
                if not text or text.endswith("\n"):  # a run of erasures ended at a line start
                    r.done = r.backtracked = True   # this token is not taken: the state is
                    continue                        # the page after the erasure
            if erased is None:
                r.run_newlines = 0
            r.raw_ids.append(t)
            r.logprob += chosen_lp[j]
            if t == eos or len(r.raw_ids) >= max_new_tokens:
                r.done = True
                continue
            keep.append(j)
            if erased is None:
                r.kept_ids.append(t)
                r.kept_pieces.append(piece)
                drops.append(0)
                feeds.append([t])
            else:
                k, extra = erased
                drop = len(r.kept_ids) - k + 1  # the erased slots and the last kept one, fed again
                last = (r.prompt_ids + r.kept_ids[:k])[-1]
                r.kept_ids = r.kept_ids[:k] + extra
                r.kept_pieces = r.kept_pieces[:k] + [pieces.setdefault(x, tokenizer.decode([x])) for x in extra]
                drops.append(drop)
                feeds.append([last] + extra)
        if not keep:
            break
        compact = False
        if len(keep) < len(active):  # finished rows leave the batch
            index = torch.tensor(keep, device=device)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
            live = live[index]
            active = [active[j] for j in keep]
            compact = True
        for j, drop in enumerate(drops):
            if drop:
                slots = live[j].nonzero().squeeze(1)
                live[j, slots[-drop:]] = False
                compact = True
        if compact:
            live = _compact(cache, live)
        width = max(map(len, feeds))
        ids = torch.full((len(active), width), pad, dtype=torch.long, device=device)
        fed = torch.zeros((len(active), width), dtype=torch.bool, device=device)
        for j, f in enumerate(feeds):
            ids[j, width - len(f):] = torch.tensor(f, device=device)
            fed[j, width - len(f):] = True
        positions = live.sum(1, keepdim=True) + (fed.long().cumsum(1) - 1).clamp(min=0)
        live = torch.cat([live, fed], dim=1)
        logits = forward(ids, live, positions)
        # left padding inside a feed (several tokens re-encoded) leaves dead slots mid-row:
        # compacted away after the next token (the attention mask hides them until then)


def _compact(cache, live):
    """Move each row's live slots to the right end, in order; drop columns no row uses."""
    import torch

    count = int(live.sum(1).max())
    index = torch.argsort(live.to(torch.uint8), dim=1, stable=True)[:, live.shape[1] - count:]
    for layer in cache.layers:
        b, h, _, d = layer.keys.shape
        gather = index[:, None, :, None].expand(b, h, count, d)
        layer.keys = layer.keys.gather(2, gather)
        layer.values = layer.values.gather(2, index[:, None, :, None].expand(b, h, count, layer.values.shape[-1]))
    return live.gather(1, index)


def _accepts_config(cls) -> bool:
    return "config" in inspect.signature(cls.__init__).parameters


# ----------------------------------------------------------------------------- Self-Backtracking

def _answer(row: _Row, tokenizer) -> str | None:
    try:
        return final_answer(collapse(tokenizer.decode(row.raw_ids, skip_special_tokens=True)))
    except MalformedTrace:
        return None


def _select(candidates: list[_Row], score: str, tokenizer) -> _Row:
    best = max(candidates, key=_Row.mean_logprob)
    if score == "logprob":
        return best
    votes = Counter(a for a in (_answer(r, tokenizer) for r in candidates) if a is not None)
    if not votes:
        return best
    top = max(votes.values())
    tied = [r for r in candidates if votes.get(_answer(r, tokenizer)) == top]
    return max(tied, key=_Row.mean_logprob)


def _self_backtrack(model, tokenizer, prompt_ids: list[list[int]], *, n: int, b: int, score: str,
                    temperature: float, max_new_tokens: int,
                    batch_size: int) -> tuple[list[_Row], list[int]]:
    """One Self-Backtracking run per prompt: the chosen completion of each, and the tokens
    each run generated in all (every sample of every round, from the state it forked)."""
    states: list[_Row | None] = [_Row(ids) for ids in prompt_ids]
    candidates: list[list[_Row]] = [[] for _ in prompt_ids]
    spent = [0] * len(prompt_ids)
    for round_ in range(b + 1):
        last = round_ == b
        owners = [i for i, s in enumerate(states) if s is not None for _ in range(n)]
        rows = [states[i].fork() for i in owners]
        start = [len(r.raw_ids) for r in rows]
        _run_batches(model, tokenizer, rows, do_sample=True, temperature=temperature,
                     max_new_tokens=max_new_tokens, batch_size=batch_size, stop_on_backtrack=not last)
        for i, r, s0 in zip(owners, rows, start):
            spent[i] += len(r.raw_ids) - s0
        states = [None] * len(prompt_ids)
        for i, r in zip(owners, rows):
            if r.backtracked:  # the state to expand next: the likeliest page to go back to
                if states[i] is None or r.mean_logprob() > states[i].mean_logprob():
                    states[i] = r
            else:
                candidates[i].append(r)
        if all(s is None for s in states):
            break
    out = []
    for i, cands in enumerate(candidates):
        if not cands:  # cannot happen (the last round stops on nothing), kept for safety
            cands = [states[i]] if states[i] is not None else [_Row(prompt_ids[i])]
        out.append(_select(cands, score, tokenizer))
    return out, spent
