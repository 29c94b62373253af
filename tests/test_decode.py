"""Decoding modes (train/decode.py): what context the model sees in each, on scripted models.

The fake model below is a one-layer Llama whose forward is replaced: it stores each fed
token id in the KV cache as its "key", so at every call it reads back exactly the context
the cache holds (the live slots of the attention mask), and picks its next token from a
policy of that context. So the tests see what the model saw, through the cache itself.
"""

import pytest
import torch

from solvers.trace import BACKSPACE as BS
from solvers.trace import BACKTRACK_TOKEN as BT
from solvers.trace import collapse

pytest.importorskip("transformers")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402

from train import decode  # noqa: E402
from train.tokenizer import build_char_tokenizer  # noqa: E402

EOS = "<eos>"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    # the vocabulary of before the outcome markers: the seeded sampling tests drew their coins over it
    return build_char_tokenizer(["Q\nR\nS\n12+3=16"], extra_tokens=(BT,))


def tiny_config(tokenizer, **sizes):
    m = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1)
    m.update(sizes)
    return LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=512, tie_word_embeddings=True,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=None, **m)


class Fake(LlamaForCausalLM):
    """``policy(prompt, context, n) -> token | {token: probability}``: ``prompt`` is the
    context up to its first newline, ``context`` what follows it, ``n`` the number of
    calls since the prefill (the index of the token being chosen). Records, per call,
    {prompt: (context, cache slots)}."""

    def __init__(self, tokenizer, policy):
        super().__init__(tiny_config(tokenizer))
        self.tok, self.policy, self.calls, self.seen = tokenizer, policy, 0, []

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=None,
                **kwargs):
        if cache.get_seq_length() == 0:
            self.calls = 0
        keys = input_ids[:, None, :, None].float()
        full, _ = cache.update(keys, keys, 0)
        live = torch.ones(full.shape[0], full.shape[2], dtype=torch.bool) if attention_mask is None \
            else attention_mask.bool()  # generate leaves it out when there is no padding
        if live.dim() == 4:  # a one-token step's mask, given ready: [rows, 1, 1, slots]
            live = live[:, 0, -1, :]
        assert live.shape[1] == full.shape[2]
        width = input_ids.shape[1]
        logits = torch.full((input_ids.shape[0], width, len(self.tok)), -1e4)
        seen = {}
        for b in range(input_ids.shape[0]):
            text = self.tok.decode(full[b, 0, live[b], 0].long().tolist())
            prompt, _, context = text.partition("\n")
            # every fed token sits at the position it would have in a fresh run of the context
            fed = live[b, -width:]
            expected = live[b, :-width].sum() + torch.arange(int(fed.sum()))
            assert position_ids[b, fed].tolist() == expected.tolist(), (text, position_ids[b])
            seen[prompt + "\n"] = (context, full.shape[2])
            choice = self.policy(prompt + "\n", context, self.calls)
            for t, p in (choice.items() if isinstance(choice, dict) else [(choice, 1.0)]):
                logits[b, -1, self.tok.convert_tokens_to_ids(t)] = torch.tensor(p).log()
        self.seen.append(seen)
        self.calls += 1
        return CausalLMOutputWithPast(logits=logits, cache=cache)


def scripted(scripts: dict):
    """A policy that writes ``scripts[prompt]`` (a list of tokens) whatever it reads."""
    return lambda prompt, context, n: scripts[prompt][n] if n < len(scripts[prompt]) else EOS


def chars(text: str) -> list[str]:
    """Char-tokenizer tokens of ``text``, <backtrack> as one."""
    out, i = [], 0
    while i < len(text):
        if text.startswith(BT, i):
            out.append(BT)
            i += len(BT)
        else:
            out.append(text[i])
            i += 1
    return out


def run(model, tok, prompts, decoding, k=1, do_sample=False, max_new_tokens=64, batch_size=8, sb=None):
    return decode.generate(model, tok, prompts, num_return_sequences=k, do_sample=do_sample, temperature=1.0,
                           max_new_tokens=max_new_tokens, batch_size=batch_size, decoding=decoding,
                           self_backtrack=sb)


# ----------------------------------------------------------------------------- erasing text

@pytest.mark.parametrize("kept, piece, expected", [
    ("12+3=16", BS * 2 + "15", "12+3=15"),     # a slip inside a line
    ("a\nb\n", BT, "a\n"),                     # a marker erases the last step
    ("a\nbb\n", BS * 3 + "c\n", "a\nc\n"),      # backspaces over a whole step
    ("a\nb\n", BT + BT, ""),                   # two markers, two steps
    ("a\nb\n<back", "track>", "a\n"),           # a marker split over several tokens
    ("", BS, ""),                              # nothing to erase: erases nothing (malformed stream)
    ("a\nb", BT, "a\nb"),                      # a marker after half a step: erases nothing
])
def test_erase_applies_the_rules_of_collapse(kept, piece, expected):
    assert decode._erase(kept, piece)[0] == expected
    try:
        assert collapse(kept + piece) == expected   # agrees with collapse wherever collapse is defined
    except Exception:
        pass


# ----------------------------------------------------------------------------- fake model: contexts

def contexts_by_step(model, prompt):
    return [s[prompt] for s in model.seen if prompt in s]


def test_erase_mode_continues_from_the_collapsed_text_and_the_cache_holds_only_kept_tokens(tok):
    stream = "12+3=16" + BS * 2 + "15\nAnswer: 15"
    model = Fake(tok, scripted({"Q\n": chars(stream)}))
    (out,), = run(model, tok, ["Q\n"], "erase")
    assert out == (stream, len(stream) + 1)   # the raw stream, EOS counted
    seen = contexts_by_step(model, "Q\n")
    for n, (context, slots) in enumerate(seen):  # call n chooses token n, having read collapse(stream[:n])
        assert context == collapse(stream[:n])
        assert slots == len("Q\n") + len(context)  # one cache slot per kept token, nothing else
    assert ("12+3=15", len("Q\n12+3=15")) in seen
    assert "12+3=16" + BS not in "".join(c for c, _ in seen)

    model = Fake(tok, scripted({"Q\n": chars(stream)}))
    (visible,), = run(model, tok, ["Q\n"], "visible")
    assert visible == out                          # same choices, same raw completion
    assert [c for c, _ in contexts_by_step(model, "Q\n")] == [stream[:n] for n in range(len(stream) + 1)]


def test_batched_rows_erase_different_amounts_and_finish_at_different_times(tok):
    scripts = {
        "Q\n": "12+3=16" + BS * 2 + "15\nAnswer: 15",
        "R\n": "1+1=3\n" + BT + "1+1=2\nx" + BS + "Answer: 2",
        "S\n": "9" + BS + "8",                     # finishes first
    }
    model = Fake(tok, scripted({p: chars(s) for p, s in scripts.items()}))
    prompts = list(scripts)
    out = run(model, tok, prompts, "erase", k=2, do_sample=True)
    for p, rows in zip(prompts, out):
        assert rows == [(scripts[p], len(chars(scripts[p])) + 1)] * 2
        for n, (context, _) in enumerate(contexts_by_step(model, p)):
            assert context == collapse("".join(chars(scripts[p])[:n]))
    for step in model.seen:  # the cache is as wide as the longest kept context among live rows
        assert max(slots for _, slots in step.values()) == max(len(p) + len(c) for p, (c, _) in step.items())

    model = Fake(tok, scripted({p: chars(s) for p, s in scripts.items()}))
    assert run(model, tok, prompts, "visible", k=2, do_sample=True) == out


def test_a_dead_end_is_forgotten_in_erase_mode_and_read_in_visible_mode(tok):
    """A model that writes from what it reads: in erase mode it cannot see the dead end it
    left, so it walks into it again; in visible mode it reads it and tries another way."""
    table = {"": "7", "7": "\n", "7\n": BT, "7\n" + BT: "5"}
    for decoding, expected in (("erase", "7\n" + BT + "7"), ("visible", "7\n" + BT + "5")):
        model = Fake(tok, lambda prompt, context, n: table.get(context, EOS))
        (text, _), = run(model, tok, ["Q\n"], decoding, max_new_tokens=4)[0]
        assert text == expected


class WordTokenizer:
    """Greedy longest-match over a small vocabulary: tokens of several characters."""

    def __init__(self, vocab):
        self.vocab = ["<pad>", "<eos>"] + vocab
        self.pad_token_id, self.eos_token_id = 0, 1

    def __len__(self):
        return len(self.vocab)

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            t = max((t for t in self.vocab[2:] if text.startswith(t, i)), key=len)
            ids.append(self.vocab.index(t))
            i += len(t)
        return {"input_ids": ids}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.vocab[i] for i in ids if not (skip_special_tokens and i < 2))

    def convert_tokens_to_ids(self, t):
        return self.vocab.index(t)


def test_a_token_of_several_characters_half_erased_is_re_encoded(tok):
    wt = WordTokenizer(["Q", "R", "\n", "12+3=", "16", "1", "5", "6", BS, BT, "ok"])
    scripts = {"Q\n": ["12+3=", "16", BS, "5"], "R\n": ["ok", "ok", "ok", "ok"]}
    model = Fake(wt, scripted(scripts))
    out = run(model, wt, ["Q\n", "R\n"], "erase")
    assert out == [[("12+3=16\b5", 5)], [("okokokok", 5)]]
    q = contexts_by_step(model, "Q\n")
    assert [c for c, _ in q] == ["", "12+3=", "12+3=16", "12+3=1", "12+3=15"]
    assert q[3][1] >= 2 + 2      # "Q", "\n", "12+3=", "1" (the "1" re-encoded, fed with "12+3=")
    r = contexts_by_step(model, "R\n")
    assert [c for c, _ in r] == ["", "ok", "okok", "okokok", "okokokok"]


# ----------------------------------------------------------------------------- self_backtrack

def test_self_backtrack_returns_to_the_kept_step_and_picks_a_finished_completion(tok):
    """From the start a coin: "a" leads to a dead end the model backtracks from, "b" to
    an answer. Each returned completion is a finished one, its dead ends still in it."""
    def policy(prompt, context, n):
        table = {"": {"a": 0.5, "b": 0.5}, "a": "\n", "a\n": BT, "b": "\n", "b\n": "A"}
        return table.get(context, EOS)
    torch.manual_seed(0)
    model = Fake(tok, policy)
    sb = {"n": 4, "b": 2, "score": "logprob"}
    out = run(model, tok, ["Q\n", "R\n"], "self_backtrack", k=3, do_sample=True, max_new_tokens=40, sb=sb)
    assert any(BT in text for rows in out for text, *_ in rows)  # seed 0: some runs did go back
    for rows in out:
        for text, n_tokens, spent in rows:
            assert collapse(text) == "b\nA"
            assert text == ("a\n" + BT) * text.count(BT) + "b\nA" and text.count(BT) <= 2
            assert n_tokens == len(chars(text)) + 1
            # the run's cost: the first round's 4 samples (3 or 4 tokens each) at least, the
            # chosen one's tokens among them, and never more than n * (b + 1) samples
            assert max(n_tokens, 4 * 3) <= spent <= 4 * 3 * 40


def test_self_backtrack_scores_by_majority_or_by_logprob(tok):
    """"x" (p 0.6) then a coin that does not change the answer 1; "y" (p 0.4) then a sure
    answer 2: the majority says 1, the mean log-probability prefers the sure 2."""
    def policy(prompt, context, n):
        if context == "":
            return {"x": 0.6, "y": 0.4}
        if context == "x":
            return {"p": 0.5, "q": 0.5}
        line = "\nAnswer: " + ("1" if context.startswith("x") else "2")
        body = context[2:] if context.startswith("x") else context[1:]
        return line[len(body)] if len(body) < len(line) else EOS
    answers = {}
    for score in ("majority", "logprob"):
        torch.manual_seed(3)
        model = Fake(tok, policy)
        sb = {"n": 7, "b": 0, "score": score}
        (row,), = run(model, tok, ["Q\n"], "self_backtrack", k=1, do_sample=True, sb=sb)
        answers[score] = row[0].rsplit(" ", 1)[-1]
    assert answers == {"majority": "1", "logprob": "2"}


def test_bad_decoding_config_is_refused_with_the_key_named():
    from solvers.config import ConfigError
    with pytest.raises(ConfigError, match="eval.decoding"):
        decode.check({"decoding": "erased"})
    with pytest.raises(ConfigError, match="eval.self_backtrack.score"):
        decode.check({"decoding": "self_backtrack", "self_backtrack": {"n": 2, "b": 1, "score": "best"}})


# ----------------------------------------------------------------------------- a real tiny Llama

@pytest.fixture(scope="module")
def llama(tok):
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(tok, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2)).eval()


PROMPTS = ["Q\n", "12+3=?\n", "S\n"]


def test_a_real_tiny_llama_runs_every_mode_end_to_end(llama, tok):
    sb = {"n": 2, "b": 1, "score": "logprob"}
    for decoding in decode.DECODINGS:
        for do_sample, k in ((False, 1), (True, 2)):
            out = run(llama, tok, PROMPTS, decoding, k=k, do_sample=do_sample, max_new_tokens=24, batch_size=4,
                      sb=sb)
            assert [len(rows) for rows in out] == [k] * len(PROMPTS)
            assert all(isinstance(t, str) and 1 <= n <= 24 for rows in out for t, n, *_ in rows)


def test_visible_decoding_writes_what_model_generate_writes(llama, tok):
    """``eval.decoding=visible`` is the project's loop without erasing (``_run(erase=False)``,
    much faster here than ``model.generate``); greedy and batched, it writes the same stream
    as ``model.generate`` (``train.decode.hf_generate``), token for token."""
    from train.decode import hf_generate
    torch.manual_seed(1)
    model = LlamaForCausalLM(tiny_config(tok, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, initializer_range=0.5)).eval()  # sharp, varied
    prompts = PROMPTS + ["12+3=16\n", "R\n"]
    ours = run(model, tok, prompts, "visible", max_new_tokens=30)
    theirs = hf_generate(model, tok, prompts, num_return_sequences=1, do_sample=False, temperature=1.0,
                         max_new_tokens=30, batch_size=8)
    assert ours == theirs
    assert len({text for (text, _), in theirs}) > 2   # the prompts do lead to different completions
    assert len(set(theirs[0][0][0])) > 2              # ... not one character repeated


class Steered(torch.nn.Module):
    """A real Llama whose choices are forced by a script (a large bonus on the scripted
    token); records the real logits, to compare with a fresh forward over the context."""

    def __init__(self, model, tokenizer, scripts):
        super().__init__()
        self.model, self.tok, self.scripts, self.calls, self.logits = model, tokenizer, scripts, 0, []
        self.config = model.config

    @property
    def device(self):
        return self.model.device

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, **kwargs):
        if cache.get_seq_length() == 0:
            self.calls = 0
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, **kwargs)
        self.logits.append(out.logits[:, -1].clone())
        bonus = torch.zeros_like(out.logits)
        for b, script in enumerate(self.scripts):
            t = script[self.calls] if self.calls < len(script) else EOS
            bonus[b, -1, self.tok.convert_tokens_to_ids(t)] = 1e4
        self.calls += 1
        return CausalLMOutputWithPast(logits=out.logits + bonus, cache=cache)


def test_the_erased_cache_gives_the_logits_of_a_fresh_forward_over_the_collapsed_text(llama, tok):
    """Rows of different lengths that erase different amounts, none finishing early (the
    row order stays the one recorded): after every token, the real model's logits equal a
    fresh uncached forward over prompt + collapse(stream so far)."""
    streams = ["12+3=16" + BS * 2 + "15\n1+1=3\n" + BT + "1+1=2\n",
               "ab\ncd\n" + BS * 6 + "ef" + BS + "g\nhijklmnopqrstu",
               "x" * 10 + BS * 3 + "yz\n" + BT + "w" * 13]
    longest = max(len(chars(s)) for s in streams)
    streams = [s + "z" * (longest - len(chars(s))) for s in streams]
    scripts = [chars(s) for s in streams]
    model = Steered(llama, tok, scripts)
    out = run(model, tok, PROMPTS, "erase", max_new_tokens=len(scripts[0]))
    assert [rows[0][0] for rows in out] == streams
    for b, (prompt, script) in enumerate(zip(PROMPTS, scripts)):
        for n in range(len(script)):
            context = prompt + collapse("".join(script[:n]))
            ids = torch.tensor([tok(context, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                fresh = llama(input_ids=ids).logits[0, -1]
            torch.testing.assert_close(model.logits[n][b], fresh, atol=1e-4, rtol=1e-4)
