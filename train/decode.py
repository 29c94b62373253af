"""How a model's completions are decoded at evaluation: ``eval.decoding``.

- ``visible`` (default): ``model.generate``'s stream, from our own loop. Backspaces and ``<backtrack>`` markers stay in
  the context: the model reads its own dead ends, as it did in training.
- ``erase``: our own loop with a KV cache. When the model emits an erasing token
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
columns no row uses. So a row's cache holds exactly its prompt and kept tokens (plus left
padding), the attention is the same as a fresh forward over the collapsed text, and no prefix
is ever recomputed. Layers other than ``DynamicLayer`` (sliding windows, quantized caches)
are refused.

Continuous batching (``_Batch``). At most ``batch_size`` rows run at once; a row that finishes
leaves the batch and waiting rows join it: they are prefilled in a cache of their own, and
both caches are left padded to the wider one and stacked. So a completion that loops to
``max_new_tokens`` costs only its own row, not its whole batch. Greedy tokens are those of
decoding each prompt alone (tests/test_decode_batching.py). ``visible`` decoding keeps its
tokens on the device: EOS and the token limit are checked there, and the host looks at the
batch only every ``sync_every`` steps (``SYNC_EVERY`` on a GPU). So do ``erase`` and
``self_backtrack`` on a GPU when the tokenizer writes one character per token (the project's
own, ``tokenizer=char``): ``_run_erase_device`` keeps each row's kept ids in a device buffer
and applies backspaces and markers with tensor operations, feeding one token a row every step
(the chosen one, or after an erasure the last kept one again); the rare token only the host
can apply (a backspace over a token of several characters, a marker spelled out) sends its
row to the host at the next look, and the row joins again. With a subword tokenizer an erasure
re-encodes text, so the host reads every step's tokens (``_run``). One-token steps hand
transformers a ready 4-D attention mask: given the 2-D one it reads the mask's values every
step to see whether it can be skipped, a host synchronisation of its own.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field, replace

from solvers.config import check_choice, check_int_range
from solvers.trace import BACKSPACE, BACKTRACK_TOKEN, MalformedTrace, final_answer

DECODINGS = ("visible", "erase", "self_backtrack")
SCORES = ("logprob", "majority")


def check(eval_cfg: dict) -> None:
    """Refuse a bad ``eval.decoding`` or ``eval.self_backtrack``, naming the key."""
    check_choice("eval.decoding", eval_cfg.get("decoding", "visible"), DECODINGS)
    if eval_cfg.get("erase_on_device") not in (None, True, False):
        from solvers.config import ConfigError
        raise ConfigError("eval.erase_on_device", f"expected true, false or null (on a GPU), "
                          f"got {eval_cfg['erase_on_device']!r}")
    if eval_cfg.get("decoding") == "self_backtrack":
        sb = eval_cfg.get("self_backtrack") or {}
        check_int_range("eval.self_backtrack.n", sb.get("n"), 1)
        check_int_range("eval.self_backtrack.b", sb.get("b"), 0)
        check_choice("eval.self_backtrack.score", sb.get("score"), SCORES)
    if (eval_cfg.get("tool_loop") or {}).get("enabled"):
        from train import toolloop
        toolloop.check(eval_cfg)  # eval.tool_loop (task=program): refused before training, not after


def generate(model, tokenizer, prompts: list[str], *, num_return_sequences: int, do_sample: bool,
             temperature: float, max_new_tokens: int, batch_size: int, decoding: str = "visible",
             self_backtrack: dict | None = None, fence: tuple[str, ...] = (),
             sync_every: int | None = None, erase_on_device: bool | None = None) -> list[list[tuple[str, int]]]:
    """For each prompt, ``num_return_sequences`` (raw completion text, completion tokens):
    the same shape as ``hf_generate``, whatever the decoding. Tokens count
    what was generated, erased tokens and the final EOS included. ``self_backtrack`` adds a
    third element: the tokens generated by the whole run, every sample of every round (the
    test-time compute of that one answer). ``fence``: the format's own tags
    (``train.data.FORMAT_TAGS``), which no erasure reaches back over.

    Rows are decoded with continuous batching: at most ``batch_size`` at once, and a row that
    finishes is replaced by a waiting one, so a completion that loops to ``max_new_tokens``
    costs only its own row. ``sync_every``: how often the host looks at the batch (default:
    every step on the CPU, every ``SYNC_EVERY`` steps on a GPU). ``erase_on_device``: erase
    and self_backtrack decoding apply erasures on the device, with no host look between
    ``sync_every`` steps (one-character tokenizers only; default: on a GPU)."""
    check({"decoding": decoding, "self_backtrack": self_backtrack})
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not ids for ids in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    model.eval()
    if decoding == "visible" and not getattr(model.generation_config, "use_cache", True):
        # our loop needs a KV cache; this model has none
        return hf_generate(model, tokenizer, prompts, num_return_sequences=num_return_sequences, do_sample=do_sample,
                           temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if decoding in ("visible", "erase"):  # visible: the stream of model.generate (tested)
        rows = [_Row(ids, fence=fence) for ids in prompt_ids for _ in range(num_return_sequences)]
        kw = dict(batch_size=batch_size, do_sample=do_sample, temperature=temperature, max_new_tokens=max_new_tokens)
        if decoding == "visible":
            _run_visible(model, tokenizer, rows, sync_every=sync_every, **kw)
        else:
            _run(model, tokenizer, rows, erase=True, on_device=erase_on_device, sync_every=sync_every, **kw)
        flat = [(tokenizer.decode(r.raw_ids, skip_special_tokens=True), len(r.raw_ids)) for r in rows]
        k = num_return_sequences
        return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]
    sb = self_backtrack
    runs = [ids for ids in prompt_ids for _ in range(num_return_sequences)]  # independent runs
    chosen, spent = _self_backtrack(model, tokenizer, runs, n=sb["n"], b=sb["b"], score=sb["score"],
                                    temperature=temperature if do_sample else 1.0,
                                    max_new_tokens=max_new_tokens, batch_size=batch_size, fence=fence,
                                    on_device=erase_on_device, sync_every=sync_every)
    flat = [(tokenizer.decode(r.raw_ids, skip_special_tokens=True), len(r.raw_ids), g)
            for r, g in zip(chosen, spent)]
    k = num_return_sequences
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def sample_ids(model, tokenizer, prompt_ids: list[list[int]], *, temperature: float, max_new_tokens: int,
               batch_size: int, eos_ids: list[int] | None = None, sync_every: int | None = None) -> list[list[int]]:
    """One sampled completion per prompt (token ids in, token ids out) by visible decoding:
    GRPO's ``grpo.generator=project`` (train/grpo.py). Each completion holds the tokens up to
    and including the first of ``eos_ids`` (default: the tokenizer's EOS), or
    ``max_new_tokens`` tokens when none came: what TRL keeps of ``model.generate``'s rows. The
    model is used as it is (no ``eval()``: TRL samples from the training model's mode too)."""
    rows = [_Row(list(ids)) for ids in prompt_ids]
    if any(not r.prompt_ids for r in rows):
        raise ValueError("every prompt needs at least one token")
    _run_visible(model, tokenizer, rows, batch_size=batch_size, do_sample=True, temperature=temperature,
                 max_new_tokens=max_new_tokens, sync_every=sync_every, eos_ids=eos_ids)
    return [r.raw_ids for r in rows]


def hf_generate(model, tokenizer, prompts: list[str], *, num_return_sequences: int, do_sample: bool,
             temperature: float, max_new_tokens: int, batch_size: int) -> list[list[tuple[str, int]]]:
    """For each prompt, ``num_return_sequences`` (completion text, completion tokens), by
    ``model.generate`` in batches: the reference the project's own loops are tested against,
    and the visible decoding of a model without a KV cache."""
    import torch

    tokenizer.padding_side = "left"
    model.eval()
    out: list[list[tuple[str, int]]] = []
    per_batch = max(1, batch_size // num_return_sequences)
    for start in range(0, len(prompts), per_batch):
        batch = prompts[start:start + per_batch]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                 temperature=temperature if do_sample else None, top_p=None, top_k=None,
                                 num_return_sequences=num_return_sequences,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new = gen[:, enc["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        ends = (new == tokenizer.eos_token_id) | (new == tokenizer.pad_token_id)
        lengths = [int(row.nonzero()[0]) + 1 if row.any() else new.shape[1] for row in ends]
        for i in range(len(batch)):
            rows = range(i * num_return_sequences, (i + 1) * num_return_sequences)
            out.append([(texts[j], lengths[j]) for j in rows])
    return out


# ----------------------------------------------------------------------------- erasing text

def _erase(kept: str, piece: str, floor: int = 0) -> tuple[str, int, bool]:
    """Type ``piece`` after ``kept`` (a text with no erasures in it): the new kept text, the
    number of newlines erased, and whether anything in ``piece`` erased. The rules of
    ``collapse``, except that an erasure with nothing to erase does nothing. The first
    ``floor`` characters of ``kept`` (up to the end of a format's tag) are never erased.

    >>> _erase("12+3=16", "\\b\\b15")
    ('12+3=15', 0, True)
    >>> _erase("a\\nb\\n", "<backtrack>")
    ('a\\n', 1, True)
    >>> _erase("a\\nb\\n<backtr", "ack>x")   # a marker completed by this piece
    ('a\\nx', 1, True)
    >>> _erase("", "\\b") , _erase("ab", "c")
    (('', 0, True), ('abc', 0, False))
    >>> _erase("x\\n</think>", "\\b\\bA", floor=10)
    ('x\\n</think>A', 0, True)
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
            if len(page) > floor:
                newlines += page.pop() == "\n"
            i += 1
        elif text.startswith(BACKTRACK_TOKEN, i):
            if len(page) > floor and page[-1] == "\n":
                page.pop()
                newlines += 1
                while len(page) > floor and page[-1] != "\n":
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
    fence: tuple = ()               # the format's tags: nothing up to the last one is erased

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
    floor = max([old.rfind(tag) + len(tag) for tag in row.fence if tag in old], default=0)
    new, newlines, erasing = _erase(old, piece, floor)
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


# ----------------------------------------------------------------------------- the loops

SYNC_EVERY = 8  # visible decoding off the CPU: the host looks at the batch once every 8 steps; a row
                # that finished in between steps on masked (its tokens are thrown away), which costs
                # less than a host synchronisation per step. On the CPU a sync is free: every step.


def _cache_kwarg(model) -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache``."""
    params = inspect.signature(model.forward).parameters
    if "cache" in params:
        return "cache"
    if "past_key_values" in params:
        return "past_key_values"
    from transformers.modeling_outputs import CausalLMOutputWithPast
    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _refill_default(batch_size: int, device) -> int:
    """Free slots that make waiting rows join the batch. On a GPU, where a model call costs its
    launches rather than its arithmetic, rows join in groups of 1/8 of the batch (each join is
    one prefill call). On the CPU the cost is the arithmetic, and a joining row is left padded
    to the longest running row, so rows join only when the whole batch is done (the batches of
    before continuous batching; see docs/study-gpu.md for the measurement)."""
    return batch_size if getattr(device, "type", "cpu") == "cpu" else max(1, batch_size // 8)


def _same_width(a, b, fill):
    """Two per-row buffers [rows, n] and [rows, m], the narrower right padded with ``fill``."""
    import torch

    if a.dim() < 2 or a.shape[1] == b.shape[1]:
        return a, b
    w = max(a.shape[1], b.shape[1])
    return tuple(torch.cat([t, t.new_full((t.shape[0], w - t.shape[1]), fill)], dim=1) for t in (a, b))


def _left_pad(t, width: int, dim: int):
    """``t`` with zeros (False) put before it along ``dim`` until that dimension is ``width``."""
    import torch

    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class _Batch:
    """The rows decoded together (continuous batching): one ``DynamicCache`` [rows, heads,
    slots, dim], the ``live`` mask over its slots [rows, slots], the next-token ``logits``
    [rows, vocab], and per-row tensors (``extra``) that follow the rows as they leave and join.
    Rows join through ``admit`` (a prefill of their own, then both caches left padded to the
    wider one and stacked) and leave through ``keep``."""

    def __init__(self, model, pad: int):
        self.model, self.device, self.pad = model, model.device, pad
        self.cache_key = _cache_kwarg(model)
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        self.step_mask = impl if impl in ("sdpa", "eager") else None
        self.rows: list[_Row] = []
        self.cache = self.live = self.logits = None
        self.extra: dict = {}

    def forward(self, cache, ids, live, positions):
        import torch

        mask = live.long()
        if ids.shape[1] == 1 and self.step_mask:
            # one new token a row: its 4-D mask is the live slots, handed over ready. Given the 2-D
            # mask, transformers tests whether every slot is live (to skip the mask): a host
            # synchronisation on every step.
            mask = live[:, None, None, :]
            if self.step_mask == "eager":  # eager attention adds its mask to the scores
                dtype = self.model.dtype
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(dtype).min)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, **{self.cache_key: cache})
        return out.logits[:, -1, :].float()

    def admit(self, rows: list[_Row], extra: dict | None = None) -> None:
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        contexts = [r.prompt_ids + r.kept_ids for r in rows]
        width = max(map(len, contexts))
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        live = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, c in enumerate(contexts):
            ids[j, width - len(c):] = torch.tensor(c)
            live[j, width - len(c):] = True
        ids, live = ids.to(self.device), live.to(self.device)
        cache = DynamicCache(config=self.model.config) if _accepts_config(DynamicCache) else DynamicCache()
        logits = self.forward(cache, ids, live, (live.long().cumsum(1) - 1).clamp(min=0))
        if any(type(layer) is not DynamicLayer for layer in cache.layers):
            raise NotImplementedError("eval.decoding=erase needs a plain DynamicCache (no sliding-window or "
                                      "quantized layers); use eval.decoding=visible for this model")
        extra = extra or {}
        if not self.rows:
            self.cache, self.live, self.logits, self.rows, self.extra = cache, live, logits, list(rows), extra
            return
        w = max(self.live.shape[1], live.shape[1])
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([_left_pad(old.keys, w, 2), _left_pad(new.keys, w, 2)])
            old.values = torch.cat([_left_pad(old.values, w, 2), _left_pad(new.values, w, 2)])
        self.live = torch.cat([_left_pad(self.live, w, 1), _left_pad(live, w, 1)])
        self.logits = torch.cat([self.logits, logits])
        self.rows += rows
        self.extra = {k: torch.cat(_same_width(v, extra[k], self.pad)) for k, v in self.extra.items()}

    def keep(self, index: list[int]) -> None:
        """Only the rows at ``index`` stay, in that order."""
        import torch

        if len(index) == len(self.rows):
            return
        if not index:
            self.rows, self.cache, self.live, self.logits, self.extra = [], None, None, None, {}
            return
        t = torch.tensor(index, device=self.device)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[t], layer.values[t]
        self.live, self.logits = self.live[t], self.logits[t]
        self.rows = [self.rows[j] for j in index]
        self.extra = {k: v[t] for k, v in self.extra.items()}


def _admit_waiting(batch: _Batch, waiting, batch_size: int, refill: int, make_extra=None) -> None:
    """Waiting rows join once ``refill`` slots are free (or all that wait fit, or the batch is empty)."""
    free = batch_size - len(batch.rows)
    if waiting and free > 0 and (free >= min(refill, len(waiting)) or not batch.rows):
        new = [waiting.popleft() for _ in range(min(free, len(waiting)))]
        batch.admit(new, make_extra(new) if make_extra else None)


def _piece(pieces: dict, t: int, tokenizer, eos) -> str:
    """decode([t]), once per id (EOS: nothing)."""
    if t not in pieces:
        pieces[t] = tokenizer.decode([t]) if t != eos else ""
    return pieces[t]


def _take(r: _Row, t: int, lp: float, tokenizer, pieces: dict, *, eos, erase: bool, stop_on_backtrack: bool,
          max_new_tokens: int) -> tuple[int, list[int]] | None:
    """Row ``r`` takes the token ``t`` (log-probability ``lp``) on the host: None when the row
    is done (EOS, the token limit, or a whole-step backtrack that stops it), else (the live
    slots that die at the right end of its cache, the ids to feed next)."""
    piece = _piece(pieces, t, tokenizer, eos)
    erased = _apply_erasure(r, piece, tokenizer) if erase and t != eos else None
    if stop_on_backtrack and erased is None and r.run_newlines and t != eos:
        text = r.kept_text(tokenizer)
        if not text or text.endswith("\n"):  # a run of erasures ended at a line start
            r.done = r.backtracked = True   # this token is not taken: the state is
            return None                     # the page after the erasure
    if erased is None:
        r.run_newlines = 0
    r.raw_ids.append(t)
    r.logprob += lp
    if t == eos or len(r.raw_ids) >= max_new_tokens:
        r.done = True
        return None
    if erased is None:
        r.kept_ids.append(t)
        r.kept_pieces.append(piece)
        return 0, [t]
    k, extra = erased
    drop = len(r.kept_ids) - k + 1  # the erased slots and the last kept one, fed again
    last = (r.prompt_ids + r.kept_ids[:k])[-1]
    r.kept_ids = r.kept_ids[:k] + extra
    r.kept_pieces = r.kept_pieces[:k] + [_piece(pieces, x, tokenizer, eos) for x in extra]
    return drop, [last] + extra


def _run(model, tokenizer, rows: list[_Row], *, batch_size: int, do_sample: bool, temperature: float,
         max_new_tokens: int, erase: bool = True, stop_on_backtrack: bool = False,
         refill: int | None = None, on_device: bool | None = None, sync_every: int | None = None) -> None:
    """Decode ``rows`` (in place) until EOS or ``max_new_tokens`` raw tokens each; each row
    starts from its prompt and kept tokens. At most ``batch_size`` rows run at once; a row that
    finishes leaves, and waiting rows join (``refill``). The host reads every step's tokens:
    erasures are applied to the rows' text. ``erase=False`` is plain decoding (the same stream
    as ``model.generate``: used by the tests to check this loop).

    ``on_device``: erase without a host look every step (``_run_erase_device``) when the
    tokenizer allows (one character per token) and no row has a fence; None (default): on a
    GPU only, since on the CPU a host look costs nothing."""
    import torch
    from collections import deque

    if erase and on_device is not False and not any(r.fence for r in rows) and \
            (on_device or _device_of(model).type != "cpu"):
        table = _erase_table(tokenizer, max(len(tokenizer), getattr(model.config, "vocab_size", 0) or 0))
        if table is not None:
            return _run_erase_device(model, tokenizer, rows, table, batch_size=batch_size, do_sample=do_sample,
                                     temperature=temperature, max_new_tokens=max_new_tokens,
                                     stop_on_backtrack=stop_on_backtrack, sync_every=sync_every, refill=refill)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    for r in rows:
        if len(r.raw_ids) >= max_new_tokens:
            r.done = True
    waiting = deque(r for r in rows if not r.done)
    batch = _Batch(model, pad)
    device = batch.device
    refill = refill or _refill_default(batch_size, device)
    pieces: dict[int, str] = {}  # decode([id]), once per id
    while True:
        _admit_waiting(batch, waiting, batch_size, refill)
        if not batch.rows:
            break
        active, logits = batch.rows, batch.logits
        logp = torch.log_softmax(logits, dim=-1)
        chosen = _choose(logits, do_sample, temperature)
        # one copy to the host per step: the token ids (exact in float64) beside their log-probabilities
        both = torch.stack([chosen.double(), logp.gather(1, chosen[:, None]).squeeze(1).double()]).tolist()
        chosen, chosen_lp = [int(t) for t in both[0]], both[1]

        keep, drops, feeds = [], [], []
        for j, r in enumerate(active):
            step = _take(r, chosen[j], chosen_lp[j], tokenizer, pieces, eos=eos, erase=erase,
                         stop_on_backtrack=stop_on_backtrack, max_new_tokens=max_new_tokens)
            if step is not None:
                keep.append(j)
                drops.append(step[0])
                feeds.append(step[1])
        compact = len(keep) < len(active)
        batch.keep(keep)  # finished rows leave the batch
        if not keep:
            continue      # waiting rows, if any, start a new batch
        live = batch.live
        if any(drops):  # each row's last ``drop`` live slots die: one mask op for the batch, no per-row sync
            live = _drop_right(live, torch.tensor(drops, device=device))
            compact = True
        if compact:
            live = _compact(batch.cache, live)
        width = max(map(len, feeds))
        ids = torch.full((len(keep), width), pad, dtype=torch.long)
        fed = torch.zeros((len(keep), width), dtype=torch.bool)
        for j, f in enumerate(feeds):
            ids[j, width - len(f):] = torch.tensor(f)
            fed[j, width - len(f):] = True
        ids, fed = ids.to(device), fed.to(device)  # one copy each to the device
        positions = live.sum(1, keepdim=True) + (fed.long().cumsum(1) - 1).clamp(min=0)
        batch.live = torch.cat([live, fed], dim=1)
        batch.logits = batch.forward(batch.cache, ids, batch.live, positions)
        # left padding inside a feed (several tokens re-encoded) leaves dead slots mid-row:
        # compacted away after the next token (the attention mask hides them until then)


def _choose(logits, do_sample: bool, temperature: float):
    """Each row's next token: sampled at ``temperature``, or the most likely."""
    import torch

    if do_sample:
        return torch.multinomial(torch.softmax(logits / temperature, dim=-1), num_samples=1).squeeze(1)
    return logits.argmax(dim=-1)


def _start(model, pad: int, rows: list[_Row], batch_size: int, max_new_tokens: int, sync_every: int | None,
           refill: int | None):
    """The device-side loops' start: an empty batch, the rows that still have tokens to write
    (waiting), and the host's look interval and refill size for the model's device."""
    from collections import deque

    batch = _Batch(model, pad)
    if sync_every is None:
        sync_every = 1 if batch.device.type == "cpu" else SYNC_EVERY
    refill = refill or _refill_default(batch_size, batch.device)
    for r in rows:
        r.done = len(r.raw_ids) >= max_new_tokens
    return batch, deque(r for r in rows if not r.done), sync_every, refill


def _run_visible(model, tokenizer, rows: list[_Row], *, batch_size: int, do_sample: bool, temperature: float,
                 max_new_tokens: int, sync_every: int | None = None, refill: int | None = None,
                 eos_ids: list[int] | None = None) -> None:
    """Plain decoding of fresh ``rows`` (in place) with the tokens kept on the device: each
    row's tokens go to a device buffer, EOS and the token limit are checked on the device, and
    the host reads the batch only every ``sync_every`` steps, to take out the rows that
    finished and let waiting ones join. A finished row steps on until then with its fed slot
    dead and its position held (its tokens are dropped), so the stream is model.generate's.
    ``eos_ids``: the tokens that end a row (default: the tokenizer's EOS; a checkpoint's
    generation config may name several, as Qwen's does)."""
    import torch

    pad = tokenizer.pad_token_id
    batch, waiting, sync_every, refill = _start(model, pad, rows, batch_size, max_new_tokens, sync_every, refill)
    device = batch.device
    stop = torch.tensor(sorted(set(eos_ids or [tokenizer.eos_token_id])), device=device)

    def make_extra(new):
        n = len(new)
        return {"out": torch.full((n, max_new_tokens), pad, dtype=torch.long, device=device),
                "count": torch.zeros(n, dtype=torch.long, device=device),
                "budget": torch.tensor([max_new_tokens - len(r.raw_ids) for r in new], device=device),
                "done": torch.zeros(n, dtype=torch.bool, device=device),
                "last": torch.full((n,), pad, dtype=torch.long, device=device)}

    steps = 0
    while True:
        _admit_waiting(batch, waiting, batch_size, refill, make_extra)
        if not batch.rows:
            break
        x, logits = batch.extra, batch.logits
        chosen = _choose(logits, do_sample, temperature)
        was_done = x["done"]
        rows_ = torch.arange(len(batch.rows), device=device)
        at = x["count"].clamp(max=max_new_tokens - 1)
        x["out"][rows_, at] = torch.where(was_done, x["out"][rows_, at], chosen)
        x["count"] = x["count"] + (~was_done).long()
        done = was_done | torch.isin(chosen, stop) | (x["count"] >= x["budget"])
        x["done"], x["last"] = done, chosen
        steps += 1
        if steps % sync_every == 0:
            finished = [j for j, d in enumerate(done.tolist()) if d]
            if finished:
                t = torch.tensor(finished, device=device)
                for j, ids, n in zip(finished, x["out"][t].tolist(), x["count"][t].tolist()):
                    r = batch.rows[j]
                    r.raw_ids += ids[:n]
                    r.kept_ids += ids[:n]
                    r.done = True
                gone = set(finished)
                batch.keep([j for j in range(len(batch.rows)) if j not in gone])
                if not batch.rows:
                    continue
                batch.live = _compact(batch.cache, batch.live)
                x = batch.extra
        live = batch.live
        positions = (live.sum(1, keepdim=True) - x["done"][:, None].long()).clamp(min=0)
        batch.live = torch.cat([live, ~x["done"][:, None]], dim=1)
        batch.logits = batch.forward(batch.cache, x["last"][:, None], batch.live, positions)


# ----------------------------------------------------------------------------- erasing on the device

def _erase_table(tokenizer, vocab: int) -> dict | None:
    """What ``_run_erase_device`` needs to erase without the host: the ids of U+0008,
    ``<backtrack>``, the newline, ``>`` and the characters of ``<backtrack`` (a marker spelled
    out), and which ids are one character (``single``, indexed by id up to ``vocab``). None when
    the tokenizer is not of that kind (a subword tokenizer: an erasure there re-encodes text,
    which only the host can do). Every token must be one character, an erasing token, or a
    piece of several characters (``<pad>``, ``<success>``) that cannot take part in spelling
    ``<backtrack>``; a backspace over such a piece, or a spelled-out marker, sends its row to
    the host (``diverted``)."""
    if len(tokenizer) > 4096:  # a subword vocabulary: not worth looking at every piece
        return None
    eos = tokenizer.eos_token_id

    def one(text):
        try:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        except (ValueError, KeyError):  # a tokenizer that cannot write it: not one character per token
            return None
        return ids[0] if len(ids) == 1 and tokenizer.decode(ids) == text else None

    bs, bt, nl, gt = one(BACKSPACE), one(BACKTRACK_TOKEN), one("\n"), one(">")
    spelled = [one(c) for c in BACKTRACK_TOKEN[:-1]]
    if None in (bs, bt, nl, gt) or None in spelled:
        return None
    single = [False] * vocab
    for i in range(min(len(tokenizer), vocab)):
        if i in (eos, bs, bt):
            continue
        piece = tokenizer.decode([i])
        if len(piece) == 1 and piece != BACKSPACE:
            single[i] = True
        elif (BACKSPACE in piece or BACKTRACK_TOKEN in piece
              or any(piece.startswith(BACKTRACK_TOKEN[-k:]) or piece.endswith(BACKTRACK_TOKEN[:k])
                     for k in range(1, len(BACKTRACK_TOKEN)))):
            return None  # a piece that erases, or could help spell a marker: the host's job
    return {"bs": bs, "bt": bt, "nl": nl, "gt": gt, "spelled": spelled, "single": single}


def _run_erase_device(model, tokenizer, rows: list[_Row], table: dict, *, batch_size: int, do_sample: bool,
                      temperature: float, max_new_tokens: int, stop_on_backtrack: bool = False,
                      sync_every: int | None = None, refill: int | None = None) -> None:
    """``_run`` with ``erase=True`` for a one-character tokenizer (``_erase_table``), with no
    host synchronisation between the host's looks (every ``sync_every`` steps). Each row's
    kept ids live in a device buffer; a backspace pops one, ``<backtrack>`` pops back to the
    line start before a trailing newline (the rules of ``_erase``), found by masks over the
    buffer. Every step feeds one token per row: the chosen one, or after an erasure the last
    kept one again (so the next logits come from the collapsed context, as in ``_run``); the
    erased slots and the re-fed one die in the ``live`` mask, and the cache is compacted only
    when the host looks. A row done in between steps on masked. A row whose token needs the
    host (a backspace over a token of several characters, a ``<backtrack>`` spelled out
    character by character) stops there: at the next look the host applies that token with
    ``_take`` and the row joins again, prefilled from its prompt and kept tokens."""
    import torch

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    batch, waiting, sync_every, refill = _start(model, pad, rows, batch_size, max_new_tokens, sync_every, refill)
    device = batch.device
    single = torch.tensor(table["single"], device=device)
    bs, bt, nl, gt = table["bs"], table["bt"], table["nl"], table["gt"]
    spelled = torch.tensor(table["spelled"], device=device)
    pieces: dict[int, str] = {}

    def make_extra(new):
        n = len(new)
        # kept ids grow by at most one a step; a piece half erased on the host came back as characters
        width = max(len(r.kept_ids) + max_new_tokens - len(r.raw_ids) for r in new)
        kept = torch.full((n, width), pad, dtype=torch.long)
        for j, r in enumerate(new):
            kept[j, :len(r.kept_ids)] = torch.tensor(r.kept_ids, dtype=torch.long)
        on = dict(device=device)
        return {"kept": kept.to(device),
                "kcount": torch.tensor([len(r.kept_ids) for r in new], **on),
                "out": torch.full((n, max_new_tokens), pad, dtype=torch.long, **on),
                "count": torch.zeros(n, dtype=torch.long, **on),
                "budget": torch.tensor([max_new_tokens - len(r.raw_ids) for r in new], **on),
                "logprob": torch.tensor([r.logprob for r in new], dtype=torch.float64, **on),
                "run_nl": torch.tensor([r.run_newlines for r in new], **on),
                "prompt_last": torch.tensor([r.prompt_ids[-1] for r in new], **on),
                "done": torch.zeros(n, dtype=torch.bool, **on),
                "stopped": torch.zeros(n, dtype=torch.bool, **on),
                "diverted": torch.zeros(n, dtype=torch.bool, **on),
                "held": torch.full((n,), pad, dtype=torch.long, **on),          # the diverted token ...
                "held_lp": torch.zeros(n, dtype=torch.float64, **on),           # ... and its log-probability
                "feed": torch.full((n,), pad, dtype=torch.long, **on)}

    def look():
        """The host's look: rows done leave (their state copied into their _Row), diverted
        rows take their token on the host and wait to join again; the cache is compacted."""
        x = batch.extra
        finished = [j for j, d in enumerate(x["done"].tolist()) if d]
        if not finished:
            batch.live = _compact(batch.cache, batch.live)  # the columns erasures left that no row needs
            return
        t = torch.tensor(finished, device=device)
        small = torch.stack([x["count"][t], x["kcount"][t], x["run_nl"][t], x["stopped"][t].long(),
                             x["diverted"][t].long(), x["held"][t]], dim=1).tolist()
        floats = torch.stack([x["logprob"][t], x["held_lp"][t]], dim=1).tolist()
        outs, kepts = x["out"][t].tolist(), x["kept"][t].tolist()
        back = []
        for j, (count, kcount, run_nl, stopped, diverted, held), (logprob, held_lp), out, kept in zip(
                finished, small, floats, outs, kepts):
            r = batch.rows[j]
            r.raw_ids += out[:count]
            r.kept_ids = kept[:kcount]
            r.kept_pieces = [_piece(pieces, i, tokenizer, eos) for i in r.kept_ids]
            r.logprob, r.run_newlines = logprob, run_nl
            if stopped:
                r.done = r.backtracked = True
            elif diverted:
                if _take(r, held, held_lp, tokenizer, pieces, eos=eos, erase=True,
                         stop_on_backtrack=stop_on_backtrack, max_new_tokens=max_new_tokens) is not None:
                    back.append(r)  # joins again: prefilled from its prompt and kept tokens
            else:
                r.done = True
        waiting.extendleft(reversed(back))
        gone = set(finished)
        batch.keep([j for j in range(len(batch.rows)) if j not in gone])
        if batch.rows:
            batch.live = _compact(batch.cache, batch.live)

    steps = 0
    while True:
        _admit_waiting(batch, waiting, batch_size, refill, make_extra)
        if not batch.rows:
            break
        x, logits = batch.extra, batch.logits
        n = len(batch.rows)
        logp = torch.log_softmax(logits, dim=-1)
        chosen = _choose(logits, do_sample, temperature)
        lp = logp.gather(1, chosen[:, None]).squeeze(1).double()
        at = torch.arange(n, device=device)
        kc, kept = x["kcount"], x["kept"]
        has = kc > 0
        last = kept[at, (kc - 1).clamp(min=0)]                    # the last kept id (where has)
        is_eos, is_bs, is_bt = chosen == eos, chosen == bs, chosen == bt
        erasing = is_bs | is_bt
        ordinary = ~erasing & ~is_eos
        active = ~x["done"]
        # the host's cases: a backspace over a piece of several characters; a spelled-out marker
        tail = (kc[:, None] - len(spelled) + torch.arange(len(spelled), device=device)).clamp(min=0)
        spelled_out = (chosen == gt) & (kc >= len(spelled)) & (kept.gather(1, tail) == spelled).all(1)
        divert = active & ((is_bs & has & ~single[last]) | spelled_out)
        stop = (active & ordinary & (x["run_nl"] > 0) & (~has | (last == nl))) if stop_on_backtrack else \
            torch.zeros_like(active)
        take = active & ~divert & ~stop
        # where the kept ids end after an erasure: one less (backspace), or the line start before
        # a trailing newline (<backtrack>; nothing when the page does not end with a newline)
        cut = is_bt & has & (last == nl)
        pos = torch.arange(kept.shape[1], device=device)
        line_start = torch.where((kept == nl) & (pos < (kc - 1)[:, None]), pos + 1, 0).max(1).values
        after = torch.where(is_bs, (kc - 1).clamp(min=0), torch.where(cut, line_start, kc))
        newlines = torch.where(is_bs, has & (last == nl), cut).long()
        # the raw stream takes every token taken
        slot = x["count"].clamp(max=max_new_tokens - 1)
        x["out"][at, slot] = torch.where(take, chosen, x["out"][at, slot])
        x["count"] = x["count"] + take.long()
        x["logprob"] = x["logprob"] + torch.where(take, lp, torch.zeros_like(lp))
        x["run_nl"] = torch.where(take & erasing, x["run_nl"] + newlines, torch.where(take, 0, x["run_nl"]))
        kslot = kc.clamp(max=kept.shape[1] - 1)
        kept[at, kslot] = torch.where(take & ordinary, chosen, kept[at, kslot])
        kc_new = torch.where(take & ordinary, kc + 1, torch.where(take & erasing, after, kc))
        finished = take & (is_eos | (x["count"] >= x["budget"]))
        x["held"] = torch.where(divert, chosen, x["held"])
        x["held_lp"] = torch.where(divert, lp, x["held_lp"])
        x["diverted"] = x["diverted"] | divert
        x["stopped"] = x["stopped"] | stop
        x["done"] = x["done"] | divert | stop | finished
        x["kcount"] = kc_new
        # an erasure kills the erased slots and the last kept one, which is fed again
        drop = torch.where(take & erasing & ~finished, kc - kc_new + 1, 0)
        live = _drop_right(batch.live, drop)
        refeed = torch.where(kc_new > 0, kept[at, (kc_new - 1).clamp(min=0)], x["prompt_last"])
        x["feed"] = torch.where(ordinary, chosen, refeed)
        batch.live = live
        steps += 1
        if steps % sync_every == 0:
            look()  # the rows that stay keep their feed (batch.extra follows them)
            if not batch.rows:
                continue
            x, live = batch.extra, batch.live
        positions = live.sum(1, keepdim=True)
        batch.live = torch.cat([live, ~x["done"][:, None]], dim=1)
        batch.logits = batch.forward(batch.cache, x["feed"][:, None], batch.live, positions)


def _drop_right(live, drop):
    """``live`` [rows, slots] with each row's last ``drop[row]`` live slots dead."""
    from_right = live.flip(1).long().cumsum(1).flip(1)  # live slots at or after each slot
    return live & (from_right > drop[:, None])


def _compact(cache, live):
    """Move each row's live slots to the right end, in order; drop columns no row uses. When
    some row needs every column there is nothing to drop, and the cache stays as it is."""
    import torch

    count = int(live.sum(1).max())
    if count == live.shape[1]:
        return live
    index = torch.argsort(live.to(torch.uint8), dim=1, stable=True)[:, live.shape[1] - count:]
    for layer in cache.layers:
        b, h, _, d = layer.keys.shape
        gather = index[:, None, :, None].expand(b, h, count, d)
        layer.keys = layer.keys.gather(2, gather)
        layer.values = layer.values.gather(2, index[:, None, :, None].expand(b, h, count, layer.values.shape[-1]))
    return live.gather(1, index)


def _device_of(model):
    import torch

    return getattr(model, "device", None) or torch.device("cpu")


def _accepts_config(cls) -> bool:
    return "config" in inspect.signature(cls.__init__).parameters


# ----------------------------------------------------------------------------- Self-Backtracking

def _answer(row: _Row, tokenizer) -> str | None:
    from train.data import read_completion
    try:  # a row with the r1 format's tags (its fence) has its answer after </think>
        return final_answer(read_completion(tokenizer.decode(row.raw_ids, skip_special_tokens=True),
                                            "r1" if row.fence else "plain")[1])
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
                    batch_size: int, fence: tuple[str, ...] = (), on_device: bool | None = None,
                    sync_every: int | None = None) -> tuple[list[_Row], list[int]]:
    """One Self-Backtracking run per prompt: the chosen completion of each, and the tokens
    each run generated in all (every sample of every round, from the state it forked)."""
    states: list[_Row | None] = [_Row(ids, fence=fence) for ids in prompt_ids]
    candidates: list[list[_Row]] = [[] for _ in prompt_ids]
    spent = [0] * len(prompt_ids)
    for round_ in range(b + 1):
        last = round_ == b
        owners = [i for i, s in enumerate(states) if s is not None for _ in range(n)]
        rows = [states[i].fork() for i in owners]
        start = [len(r.raw_ids) for r in rows]
        _run(model, tokenizer, rows, do_sample=True, temperature=temperature,
                     max_new_tokens=max_new_tokens, batch_size=batch_size, stop_on_backtrack=not last,
                     on_device=on_device, sync_every=sync_every)
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
