"""python -m benchmarks.decode_bench: tokens per second of each eval.decoding mode.

The default tiny model (conf/model/tiny.yaml sizes: 0.87M parameters, random weights, char
tokenizer) writes 256 tokens for each of 64 Countdown-like prompts in one batch of 64,
sampling at temperature 1. Random weights rarely pick U+0008 (about 1 token in 100), so a
second run adds a bias to its logit that makes about one token in 8 a backspace: the cost
of erasing. "generated" counts every token the model chose (self_backtrack's discarded
samples included; visible also steps finished rows until the batch ends, as generate does);
"returned" counts the tokens of the completions handed back.
"""

from __future__ import annotations

import sys
import time

import torch


def main(threads: int = 1) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from train import decode
    from train.tokenizer import build_char_tokenizer

    torch.set_num_threads(threads)
    tok = build_char_tokenizer([])
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                      num_attention_heads=4, max_position_embeddings=2048, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    prompts = [f"Use 3, 5, {i} and {i + 7} to make {20 + i}.\n" for i in range(64)]
    backspace = tok.convert_tokens_to_ids("\b")
    for bias in (0.0, 3.0):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).eval()
        with torch.no_grad():
            model.lm_head.weight.data = model.lm_head.weight.data.clone()  # untie, then bias one row
            model.config.tie_word_embeddings = False
        generated = [0]

        def count(module, args, kwargs, output):
            ids = kwargs.get("input_ids")
            generated[0] += ids.shape[0]
            output.logits[:, -1, backspace] += bias
            return output

        model.register_forward_hook(count, with_kwargs=True)
        for decoding in decode.DECODINGS:
            generated[0] = 0
            t0 = time.perf_counter()
            out = decode.generate(model, tok, prompts, num_return_sequences=1, do_sample=True, temperature=1.0,
                                  max_new_tokens=256, batch_size=64, decoding=decoding,
                                  self_backtrack={"n": 4, "b": 2, "score": "logprob"})
            dt = time.perf_counter() - t0
            returned = sum(n for rows in out for _, n, *_ in rows)
            erasing = sum(t.count("\b") + t.count("<backtrack>") for rows in out for t, *_ in rows)
            print(f"backspace bias {bias:3.1f}  {decoding:14s} {dt:6.2f} s  generated {generated[0]:6d} "
                  f"({generated[0] / dt:6.0f} tok/s)  returned {returned:6d} ({returned / dt:6.0f} tok/s)  "
                  f"erasing tokens returned {erasing}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
