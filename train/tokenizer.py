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


def check_ordinary(tok) -> None:
    """Raise unless the backspace and the marker survive decoding with special tokens
    skipped, the way TRL hands completions to reward functions."""
    from solvers.config import ConfigError
    probe = f"a{BACKSPACE}b\n{BACKTRACK_TOKEN}"
    ids = tok(probe, add_special_tokens=False)["input_ids"]
    if tok.decode(ids, skip_special_tokens=True) != probe:
        raise ConfigError("tokenizer", "the tokenizer does not round-trip U+0008 and <backtrack> as ordinary "
                          "tokens; add them with tokenizer.add_tokens([...]) (not as special tokens)")
