"""Continuous batching in train/decode.py: rows that finish leave the batch and waiting rows
take their place, and visible decoding keeps its tokens on the device (the host looks every
``sync_every`` steps). None of it may change a greedy token: each case below decodes the same
prompts with the project's loops as they were before continuous batching
(``tests/decode_reference.py``, train/decode.py at commit 3112027), one prompt at a time, and
through ``model.generate``, and wants the same completions.
"""

import pytest
import torch

pytest.importorskip("transformers")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from solvers.trace import BACKSPACE as BS  # noqa: E402
from solvers.trace import BACKTRACK_TOKEN as BT  # noqa: E402
from tests import decode_reference as reference  # noqa: E402
from train import decode  # noqa: E402
from train.decode import hf_generate  # noqa: E402
from train.tokenizer import build_char_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# prompts of different lengths (1 to 16 characters): rows join with different left padding
PROMPTS = ["Q\n", "12+3=?\n", "S\n", "Use 3, 5, 7.\n", "ab\n", "R\n", "1+1=2\n12+3=16\n", "x\n"]
MAX_NEW = 40
EOS = "<eos>"


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer(["QRS 12+3=16?\nUse, 57.abx"], extra_tokens=(BT,))


def llama(tok, seed, bias=None):
    """A tiny Llama with sharp random weights (varied greedy streams). ``bias``: {token:
    logit bonus}, added by a forward hook, so that erasing tokens are common."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                      initializer_range=0.5)
    model = LlamaForCausalLM(cfg).eval()
    if bias:
        ids = {tok.convert_tokens_to_ids(t): b for t, b in bias.items()}

        def add(module, args, kwargs, output):
            for i, b in ids.items():
                output.logits[..., i] += b
            return output
        model.register_forward_hook(add, with_kwargs=True)
    return model


def run(module, model, tok, decoding, batch_size, **kw):
    return module.generate(model, tok, PROMPTS, num_return_sequences=1, do_sample=False, temperature=1.0,
                           max_new_tokens=MAX_NEW, batch_size=batch_size, decoding=decoding, **kw)


# (decoding, logit bonus, seed): why each case is here
CASES = [
    ("visible", None, 1),                  # plain streams; several run to the token limit
    ("visible", {"\n": 2.0}, 2),           # another model
    ("erase", {BS: 2.5, EOS: 1.5}, 6),                # backspaces erase inside lines and over line starts
    ("erase", {BT: 2.0, "\n": 1.5, EOS: 2.5}, 3),     # <backtrack> markers erase whole steps
]


@pytest.mark.parametrize("decoding, bias, seed", CASES)
def test_greedy_tokens_match_the_old_loops_and_unbatched_decoding(tok, decoding, bias, seed, monkeypatch):
    model = llama(tok, seed, bias)
    old = run(reference, model, tok, decoding, batch_size=len(PROMPTS))
    alone = run(decode, model, tok, decoding, batch_size=1)      # one row at a time: nothing to share
    assert run(decode, model, tok, decoding, batch_size=3) == old   # whole batches of 3 (the CPU default)
    for refill in (1, 2):                                        # rows join as 1 or 2 slots free up (GPU)
        monkeypatch.setattr(decode, "_refill_default", lambda batch_size, device: refill)
        for batch_size in (3, len(PROMPTS)):                     # 3 < 8 prompts: rows are refilled
            assert run(decode, model, tok, decoding, batch_size) == old, (batch_size, refill)
    assert alone == old
    limit = [n == MAX_NEW for (_, n), in old]
    assert any(limit) and not all(limit)   # some rows loop to the limit, others stop early: refills happen
    if decoding == "erase":
        assert sum(t.count(BS) + t.count(BT) for (t, _), in old) >= 5   # the case does erase
    else:
        theirs = hf_generate(model, tok, PROMPTS, num_return_sequences=1, do_sample=False, temperature=1.0,
                             max_new_tokens=MAX_NEW, batch_size=len(PROMPTS))
        assert old == theirs


@pytest.mark.parametrize("sync_every, refill", [
    (1, 1),     # the CPU default: the host looks every step, one free slot lets a row in
    (4, 1),     # the GPU path: finished rows step on masked for up to 3 steps
    (7, 2),     # ... and waiting rows join two at a time
    (64, 3),    # longer than any completion: one look per batch
])
def test_visible_tokens_do_not_depend_on_how_often_the_host_looks(tok, sync_every, refill, monkeypatch):
    model = llama(tok, 1)
    want = run(reference, model, tok, "visible", batch_size=len(PROMPTS))
    monkeypatch.setattr(decode, "_refill_default", lambda batch_size, device: refill)
    assert run(decode, model, tok, "visible", batch_size=3, sync_every=sync_every) == want


def test_a_looping_row_costs_only_its_own_row(tok):
    """Decoding steps (model calls on one new token per row) for 8 prompts in batches of 3,
    three of whose greedy completions loop to MAX_NEW. The old loop runs each batch to its
    slowest row (model.generate's count too); with refilling a slot that frees up takes the
    next prompt, so the steps obey the list-scheduling bound: tokens / 3 + (2/3) x longest."""
    model = llama(tok, 3, {EOS: 1.5})
    widths = []
    model.register_forward_hook(lambda m, a, kw, out: widths.append(kw["input_ids"].shape[1]), with_kwargs=True)
    rows = [reference._Row(tok(p)["input_ids"]) for p in PROMPTS]
    reference._run_batches(model, tok, rows, batch_size=3, do_sample=False, temperature=1.0,
                           max_new_tokens=MAX_NEW, erase=False)
    lengths = [len(r.raw_ids) for r in rows]
    assert lengths.count(MAX_NEW) == 3 and min(lengths) < MAX_NEW / 4   # the case: loops beside short rows
    old_steps = sum(max(lengths[i:i + 3]) for i in range(0, len(rows), 3))
    widths.clear()
    decode._run_visible(model, tok, [decode._Row(tok(p)["input_ids"]) for p in PROMPTS], batch_size=3,
                        do_sample=False, temperature=1.0, max_new_tokens=MAX_NEW, sync_every=1, refill=1)
    steps = widths.count(1)
    assert steps <= sum(lengths) / 3 + 2 / 3 * MAX_NEW < old_steps
    assert len(widths) - steps <= len(PROMPTS)          # and at most one prefill call per prompt


def test_self_backtrack_samples_what_the_old_loop_sampled_when_all_rows_fit(tok):
    """Sampling draws one multinomial over the live rows per step, so with every row in one
    batch the same seed gives the same runs as before."""
    model = llama(tok, 3, {BT: 2.0, "\n": 1.5, EOS: 2.5})
    sb = {"n": 3, "b": 2, "score": "logprob"}
    outs = []
    for module in (reference, decode):
        torch.manual_seed(0)
        outs.append(module.generate(model, tok, PROMPTS[:3], num_return_sequences=1, do_sample=True,
                                    temperature=1.0, max_new_tokens=MAX_NEW, batch_size=64,
                                    decoding="self_backtrack", self_backtrack=sb))
    assert outs[0] == outs[1]
    assert any(BT in t for rows in outs[0] for t, *_ in rows)


def test_sampled_rows_are_all_returned_in_prompt_order(tok, monkeypatch):
    """More sampled rows than the batch, joining as single slots free up: every prompt gets
    its k completions, each at most MAX_NEW tokens."""
    model = llama(tok, 2)
    monkeypatch.setattr(decode, "_refill_default", lambda batch_size, device: 1)
    torch.manual_seed(0)
    for decoding in ("visible", "erase"):
        out = decode.generate(model, tok, PROMPTS, num_return_sequences=3, do_sample=True, temperature=1.0,
                              max_new_tokens=MAX_NEW, batch_size=5, decoding=decoding, sync_every=3)
        assert [len(rows) for rows in out] == [3] * len(PROMPTS)
        assert all(1 <= n <= MAX_NEW for rows in out for _, n in rows)
        assert len({t for rows in out for t, _ in rows}) > len(PROMPTS)   # samples differ
