"""Erasing on the device (train/decode.py ``_run_erase_device``): erase and self_backtrack
decoding with a one-character tokenizer apply backspaces and ``<backtrack>`` markers with
tensor operations, and the host looks at the batch only every ``sync_every`` steps. None of
it may change a token: each case decodes the same prompts with the host's loop (``_run``,
itself tested against the loops of before in tests/test_decode_batching.py) and wants the
same completions, including the rows the device sends to the host (a backspace over a token
of several characters, a marker spelled out character by character).
"""

import pytest
import torch

pytest.importorskip("transformers")

from solvers.trace import BACKSPACE as BS  # noqa: E402
from solvers.trace import BACKTRACK_TOKEN as BT  # noqa: E402
from solvers.trace import collapse  # noqa: E402
from tests.test_decode import Fake, WordTokenizer  # noqa: E402
from tests.test_decode_batching import EOS, MAX_NEW, PROMPTS, llama  # noqa: E402
from train import decode  # noqa: E402
from train.tokenizer import build_char_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SUCCESS = "<success>"


@pytest.fixture(scope="module")
def tok():
    # a piece of several characters (<success>) beside the characters: a backspace over it is the host's
    return build_char_tokenizer(["QRS 12+3=16?\nUse, 57.abx"], extra_tokens=(BT, SUCCESS))


def generate(model, tok, decoding="erase", **kw):
    args = dict(num_return_sequences=1, do_sample=False, temperature=1.0, max_new_tokens=MAX_NEW,
                batch_size=3, decoding=decoding)
    args.update(kw)
    return decode.generate(model, tok, PROMPTS, **args)


class Spy:
    """Counts calls of ``decode.<name>`` while letting them through."""

    def __init__(self, monkeypatch, name):
        self.calls, original = 0, getattr(decode, name)

        def spy(*a, **kw):
            self.calls += 1
            return original(*a, **kw)
        monkeypatch.setattr(decode, name, spy)


# (logit bonus, seed): why each case is here
CASES = [
    ({BS: 2.5, EOS: 1.5}, 6),               # backspaces inside lines and over line starts
    ({BT: 2.0, "\n": 1.5, EOS: 2.5}, 3),    # <backtrack> markers erase whole steps
    ({BT: 3.0, "\n": 2.5}, 5),              # markers with nothing to erase, rows to the token limit
    ({SUCCESS: 2.0, BS: 2.5}, 7),           # backspaces over <success>: rows go to the host and come back
]


@pytest.mark.parametrize("bias, seed", CASES)
def test_greedy_tokens_are_the_host_loops_however_often_the_host_looks(tok, bias, seed, monkeypatch):
    model = llama(tok, seed, bias)
    host = generate(model, tok, erase_on_device=False)
    assert sum(t.count(BS) + t.count(BT) for (t, _), in host) > 10     # the case erases
    device = Spy(monkeypatch, "_run_erase_device")
    taken = Spy(monkeypatch, "_take")           # on the device path: only rows sent to the host
    for sync_every in (1, 3, 64):
        for batch_size in (1, 3, len(PROMPTS)):
            got = generate(model, tok, erase_on_device=True, sync_every=sync_every, batch_size=batch_size)
            assert got == host, (sync_every, batch_size)
    assert device.calls == 9
    assert (taken.calls > 0) == (SUCCESS in bias)
    if SUCCESS in bias:
        assert any(SUCCESS + BS in t for (t, _), in host)


def test_rows_join_as_slots_free_up_on_the_device_path(tok, monkeypatch):
    model = llama(tok, 6, {BS: 2.5, EOS: 1.5})
    host = generate(model, tok, erase_on_device=False)
    for refill in (1, 2):
        monkeypatch.setattr(decode, "_refill_default", lambda batch_size, device: refill)
        assert generate(model, tok, erase_on_device=True, sync_every=4) == host


def test_the_model_reads_the_collapsed_page_at_every_step_even_through_the_host(tok):
    """Scripted streams (each prompt's tokens in order, whatever the model reads): a marker
    spelled out character by character and a backspace over <success> go to the host, which
    applies them and sends the row back; at every step the model reads collapse(stream so far)."""
    scripts = {
        "Q\n": ["1", "\n", "2", "\n"] + list(BT) + ["3", BS, "4", "\n", BT, "5"],
        "R\n": ["a", SUCCESS, BS, BS, "b", "\n", "c", "\n", BT, "d"],
        "S\n": ["9", "9", BS, BS, "8", "\n", "7", "\n", BT],
    }
    counts = dict.fromkeys(scripts, 0)

    def policy(prompt, context, n):
        counts[prompt] += 1
        script = scripts[prompt]
        return script[counts[prompt] - 1] if counts[prompt] <= len(script) else EOS

    model = Fake(tok, policy)
    out = decode.generate(model, tok, list(scripts), num_return_sequences=1, do_sample=False, temperature=1.0,
                          max_new_tokens=64, batch_size=8, decoding="erase", erase_on_device=True, sync_every=1)
    for (prompt, script), ((text, n),) in zip(scripts.items(), out):
        assert (text, n) == ("".join(script), len(script) + 1)
        contexts = [s[prompt][0] for s in model.seen if prompt in s]
        assert contexts == [collapse("".join(script[:i])) for i in range(len(script) + 1)]
    assert [s["Q\n"][0] for s in model.seen if "Q\n" in s][len("1\n2\n") + len(BT)] == "1\n"  # spelled: a marker


def test_a_subword_tokenizer_stays_on_the_host(monkeypatch):
    wt = WordTokenizer(["Q", "R", "\n", "12+3=", "16", "1", "5", "6", BS, BT, "ok"])
    assert decode._erase_table(wt, len(wt)) is None
    assert decode._erase_table(build_char_tokenizer([]), 200) is not None


def test_a_gpu_model_erases_on_the_device_by_default(tok, monkeypatch):
    model = llama(tok, 6, {BS: 2.5})
    device = Spy(monkeypatch, "_run_erase_device")
    generate(model, tok)
    assert device.calls == 0                        # the CPU: the host looks every step
    monkeypatch.setattr(decode, "_device_of", lambda model: torch.device("cuda"))
    generate(model, tok)
    assert device.calls == 1
    generate(model, tok, erase_on_device=False)
    assert device.calls == 1


def test_self_backtrack_on_the_device_samples_what_the_host_samples(tok):
    """The host looking every step, rows leave the batch at the same steps as in ``_run``, so
    one multinomial over the same rows per step: the same seed gives the same runs."""
    model = llama(tok, 3, {BT: 2.0, "\n": 1.5, EOS: 2.5})
    sb = {"n": 3, "b": 2, "score": "logprob"}
    outs = []
    for on_device in (False, True):
        torch.manual_seed(0)
        outs.append(generate(model, tok, "self_backtrack", do_sample=True, batch_size=64, self_backtrack=sb,
                             erase_on_device=on_device, sync_every=1))
    assert outs[0] == outs[1]
    assert any(BT in t for rows in outs[0] for t, *_ in rows)
    torch.manual_seed(0)   # looking every 5 steps: other draws, the same shape
    out = generate(model, tok, "self_backtrack", do_sample=True, batch_size=64, self_backtrack=sb,
                   erase_on_device=True, sync_every=5)
    assert [len(rows) for rows in out] == [1] * len(PROMPTS)
    assert all(1 <= n <= MAX_NEW and spent >= n for rows in out for _, n, spent in rows)


@pytest.mark.parametrize("decoding", ["erase", "visible"])
def test_decoding_reads_the_host_only_when_it_looks(tok, decoding, host_reads):
    """Issue 16: no per-step host synchronisation on the GPU path. One batch of 8 rows, 40
    steps: the host's loop (erase) or a look every step (visible) reads the host every step;
    with a look every 64 steps decoding reads it a handful of times (the prefill, the look at
    the end). transformers itself would read the attention mask every step to see whether it
    can skip it; a one-token step hands it the 4-D mask ready."""
    model = llama(tok, 6, {BS: 2.5, EOS: 1.5})
    steps = []
    model.register_forward_hook(lambda m, a, kw, out: steps.append(kw["input_ids"].shape[1] == 1), with_kwargs=True)
    every_step = generate(model, tok, decoding, batch_size=len(PROMPTS), erase_on_device=False, sync_every=1)
    reads_before, steps_before = sum(host_reads.values()), sum(steps)
    steps[:] = []
    assert generate(model, tok, decoding, batch_size=len(PROMPTS), erase_on_device=True, sync_every=64) == every_step
    assert reads_before >= steps_before >= 30
    assert sum(host_reads.values()) - reads_before <= 8 < 30 <= sum(steps)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_ready_step_mask_gives_model_generates_tokens(tok, attention):
    """One-token steps hand the model a 4-D mask (boolean for sdpa, additive for eager): the
    visible stream is still model.generate's, which builds its masks itself."""
    model = llama(tok, 2)
    model.set_attn_implementation(attention)
    assert model.config._attn_implementation == attention
    ours = generate(model, tok, "visible", batch_size=len(PROMPTS))
    theirs = decode.hf_generate(model, tok, PROMPTS, num_return_sequences=1, do_sample=False, temperature=1.0,
                                max_new_tokens=MAX_NEW, batch_size=len(PROMPTS))
    assert ours == theirs
    host = generate(llama(tok, 6, {BS: 2.5}), tok, erase_on_device=False)
    erasing = llama(tok, 6, {BS: 2.5})
    erasing.set_attn_implementation(attention)
    assert generate(erasing, tok, erase_on_device=True, sync_every=4) == host


def test_evaluation_hands_eval_erase_on_device_to_the_decoder(tok, monkeypatch, tmp_path):
    """``eval.erase_on_device``: null (a GPU decides), true or false reach train.decode."""
    from train import evaluate

    seen = []
    monkeypatch.setattr(decode, "generate", lambda *a, **kw: seen.append(kw["erase_on_device"]) or
                        [[("Answer: 1", 3)] * kw["num_return_sequences"] for _ in a[2]])
    records = [{"Question": "Q", "Answer": 1, "task": "countdown", "id": "x", "puzzle": {"numbers": [1, 2], "target": 1}}]
    e = {"n_problems": 1, "num_samples": 0, "k": [], "max_new_tokens": 8, "batch_size": 2, "temperature": 1.0,
         "decoding": "erase", "split": "test"}
    for value in (None, True, False):
        evaluate.evaluate_one(None, tok, records, {**e, "erase_on_device": value}, tmp_path / "s.jsonl")
    assert seen == [None, True, False]
