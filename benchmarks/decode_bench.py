"""python -m benchmarks.decode_bench [THREADS] [--device cuda] [--prompts N] [--batch-size B] [--size 25m]:
tokens per second of each eval.decoding mode beside model.generate.

The default: the tiny model (conf/model/tiny.yaml sizes: 0.87M parameters, random weights, char
tokenizer) writes up to 256 tokens for each of 64 Countdown-like prompts in batches of 64,
sampling at temperature 1, on the CPU. ``--size 25m`` is the GPU study's model
(experiment=style_ablation_gpu: hidden 512, 8 layers); on a GPU try ``--device cuda --prompts
1024 --batch-size 512``. Random weights rarely pick U+0008 (about 1 token in 100), so a second
run adds a bias to its logit that makes about one token in 8 a backspace: the cost of erasing.
"generated" counts every token the model chose (self_backtrack's discarded samples included;
model.generate also steps finished rows until its batch ends); "returned" counts the tokens of
the completions handed back; "attention-mask cells" sums rows x slots over the model calls
(the attention's work). ``--reference``: the loops of before continuous batching.
``--erase-on-device on``: erasures applied on the device also on the CPU (``off``: by the
host also on a GPU).
"""

from __future__ import annotations

import argparse
import time

import torch

SIZES = {"tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
         "25m": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8)}


def main(argv: list[str] | None = None) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from train import decode
    from train.decode import hf_generate
    from train.tokenizer import build_char_tokenizer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_bench", description=__doc__.splitlines()[0])
    parser.add_argument("threads", nargs="?", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--modes", default="generate," + ",".join(decode.DECODINGS),
                        help="comma-separated: generate (model.generate) and eval.decoding modes")
    parser.add_argument("--reference", action="store_true", help="the loops of before continuous batching "
                        "(tests/decode_reference.py, train/decode.py at commit 3112027), for a before/after")
    parser.add_argument("--refill", type=int, default=None, help="free slots that let waiting rows join "
                        "(default: the whole batch on the CPU, 1/8 of it on a GPU)")
    parser.add_argument("--sync-every", type=int, default=None, help="visible decoding: steps between the "
                        "host's looks at the batch (default: 1 on the CPU, train.decode.SYNC_EVERY on a GPU)")
    parser.add_argument("--erase-on-device", choices=("auto", "on", "off"), default="auto",
                        help="erase and self_backtrack: apply erasures on the device, the host looking every "
                        "--sync-every steps (default auto: on a GPU only)")
    args = parser.parse_args(argv)
    if args.reference:
        from tests import decode_reference as decode
    elif args.refill:
        decode._refill_default = lambda batch_size, device: args.refill

    torch.set_num_threads(args.threads)
    tok = build_char_tokenizer([])
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                      **SIZES[args.size])
    prompts = [f"Use 3, 5, {i % 97} and {i % 89 + 7} to make {20 + i % 83}.\n" for i in range(args.prompts)]
    backspace = tok.convert_tokens_to_ids("\b")
    print(f"decode benchmark: {args.size} Llama, random weights, {args.prompts} prompts, batch {args.batch_size}, "
          f"up to {args.max_new_tokens} tokens, sampling at temperature 1, device {args.device}")
    for bias in (0.0, 3.0):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).eval().to(args.device)
        with torch.no_grad():
            model.lm_head.weight.data = model.lm_head.weight.data.clone()  # untie, then bias one row
            model.config.tie_word_embeddings = False
        generated, calls, cells = [0], [0], [0]

        def count(module, args_, kwargs, output):
            ids = kwargs.get("input_ids")
            generated[0] += ids.shape[0]
            calls[0] += 1
            mask = kwargs.get("attention_mask")
            cells[0] += mask.numel() if mask is not None else ids.numel()
            output.logits[:, -1, backspace] += bias
            return output

        model.register_forward_hook(count, with_kwargs=True)
        for mode in args.modes.split(","):
            generated[0] = calls[0] = cells[0] = 0
            kw = dict(num_return_sequences=1, do_sample=True, temperature=1.0, max_new_tokens=args.max_new_tokens,
                      batch_size=args.batch_size)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            if mode == "generate":
                out = hf_generate(model, tok, prompts, **kw)
            else:
                more = {"sync_every": args.sync_every} if args.sync_every and not args.reference else {}
                if args.erase_on_device != "auto" and not args.reference:
                    more["erase_on_device"] = args.erase_on_device == "on"
                out = decode.generate(model, tok, prompts, decoding=mode,
                                      self_backtrack={"n": 4, "b": 2, "score": "logprob"}, **kw, **more)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            returned = sum(n for rows in out for _, n, *_ in rows)
            erasing = sum(t.count("\b") + t.count("<backtrack>") for rows in out for t, *_ in rows)
            name = "model.generate" if mode == "generate" else mode
            print(f"backspace bias {bias:3.1f}  {name:14s} {dt:6.2f} s  generated {generated[0]:7d} "
                  f"({generated[0] / dt:7.0f} tok/s)  returned {returned:7d} ({returned / dt:7.0f} tok/s)  "
                  f"erasing tokens returned {erasing}  model calls {calls[0]}  attention-mask cells {cells[0]}",
                  flush=True)


if __name__ == "__main__":
    main()
