"""python -m benchmarks.grpo_bench [THREADS] [--device cuda] [--size 25m] [--prompts N] ...: GRPO's
generation, generator against generator, through the real GRPOTrainer.

For each generator the same model (random weights, seed 0, or ``--init-from`` a checkpoint)
trains ``--steps`` GRPO steps on the same prompts, and the time inside TRL's generation call
(``GRPOTrainer._generate``: tokenizing, generating, decoding) is measured apart from the whole
step. Generators:

- ``trl``: TRL's default path, ``model.generate`` over the whole generation batch;
- ``trl_cb``: TRL's ``use_transformers_continuous_batching`` (transformers' paged continuous batching);
- ``project``: ``grpo.generator=project``, train/decode.py's visible loop through TRL's rollout_func.

Every step samples ``--prompts`` x ``--num-generations`` completions of up to
``--max-completion-length`` tokens at temperature 1, on Countdown-like prompts, rewarded by
the real correctness reward. Random weights pick EOS about once in 100 tokens, so completion
lengths spread as a trained model's do (and the generators sample different tokens: compare
tokens/s, and completions/s at similar mean lengths). The first step is a warm-up and left out
of the rates when there are more. The defaults (the tiny model, 2 prompts x 8, 512 tokens: one
step of conf/grpo/default.yaml) take about a minute per generator on 2 CPU cores; on a GPU try
``--device cuda --size 25m --prompts 16``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time

import torch

from benchmarks.decode_bench import SIZES

GENERATORS = {"trl": ("trl", False), "trl_cb": ("trl", True), "project": ("project", False)}


def measure(name: str, model, tok, dataset, args, out_dir: str) -> dict:
    """One generator's GRPO run: seconds inside generation and per step, completions and tokens."""
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig

    from train.grpo import build_trainer
    from train.rewards import REWARDS

    generator, paged = GENERATORS[name]
    cuda = args.device.startswith("cuda")
    config = GRPOConfig(output_dir=out_dir, use_cpu=not cuda, bf16=cuda, gradient_checkpointing=False,
                        per_device_train_batch_size=args.prompts * args.num_generations,
                        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                        temperature=1.0, beta=0.0, learning_rate=5e-5, max_steps=args.steps, logging_steps=10**6,
                        save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
                        dataloader_num_workers=0, use_transformers_continuous_batching=paged)
    steps: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_begin(self, *a, **k):
            steps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            steps[-1] = time.perf_counter() - steps[-1]

    trainer = build_trainer(model, tok, dataset, [REWARDS["correctness"]], config, generator=generator,
                            callbacks=[StepTimes()])
    calls = []
    generate = trainer._generate  # TRL's generation call, the same for every generator: timed around

    def timed(prompts):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = generate(prompts)
        if cuda:
            torch.cuda.synchronize()
        calls.append((time.perf_counter() - t0, len(out[1]), sum(len(c) for c in out[1])))
        return out

    trainer._generate = timed
    trainer.remove_callback(PrinterCallback)  # disable_tqdm prints every log dict instead: the table is enough
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    warm = 1 if len(calls) > 1 else 0   # the first step warms up (CUDA, the paged cache): left out
    kept, kept_steps = calls[warm:], steps[warm:]
    seconds = sum(c[0] for c in kept)
    completions, tokens = sum(c[1] for c in kept), sum(c[2] for c in kept)
    return {"generator": name, "steps": len(calls), "timed": len(kept), "generation_s_per_step": seconds / len(kept),
            "completions_per_s": completions / seconds, "tokens_per_s": tokens / seconds,
            "mean_length": tokens / completions, "step_s": sum(kept_steps) / len(kept_steps), "total_s": total}


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["generator"] == "trl"), None)
    lines = ["| generator | steps (timed) | generation s/step | completions/s | tokens/s | mean length | "
             "step s | generation vs trl |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x tokens/s" if base else ""
        lines.append(f"| {r['generator']} | {r['steps']} ({r['timed']}) | {r['generation_s_per_step']:.2f} | "
                     f"{r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['mean_length']:.0f} | "
                     f"{r['step_s']:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from train.tokenizer import build_char_tokenizer, load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpo_bench", description=__doc__.splitlines()[0])
    parser.add_argument("threads", nargs="?", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=list(SIZES), default="tiny", help="random weights of these sizes")
    parser.add_argument("--init-from", default=None, help="a checkpoint with its tokenizer instead (RUN/sft)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generators", default=",".join(GENERATORS), help=f"comma-separated, of {', '.join(GENERATORS)}")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    names = args.generators.split(",")
    for n in names:
        if n not in GENERATORS:
            parser.error(f"--generators: unknown generator {n!r} (one of {', '.join(GENERATORS)})")

    torch.set_num_threads(args.threads)
    if args.init_from:
        tok = load_tokenizer(args.init_from)
        base = AutoModelForCausalLM.from_pretrained(args.init_from)
        what = args.init_from
    else:
        tok = build_char_tokenizer([])
        torch.manual_seed(0)
        base = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, tie_word_embeddings=True,
                                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                            bos_token_id=None, **SIZES[args.size]))
        what = f"{args.size} Llama, random weights"
    n = args.prompts * (args.steps + 1)
    rows = [{"prompt": f"Use 3, 5, {i % 97} and {i % 89 + 7} to make {20 + i % 83}.\n",
             "puzzle": json.dumps({"numbers": [3, 5, i % 97, i % 89 + 7], "target": 20 + i % 83}),
             "task": "countdown", "format": "plain"} for i in range(n)]
    dataset = Dataset.from_list(rows)
    print(f"GRPO generation benchmark: {what} ({sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters), "
          f"{args.steps} steps of {args.prompts} prompts x {args.num_generations} completions, up to "
          f"{args.max_completion_length} tokens, temperature 1, device {args.device}, {args.threads} CPU thread(s), "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            torch.manual_seed(0)
            results.append(measure(name, copy.deepcopy(base), tok, dataset, args, f"{tmp}/{name}"))
            r = results[-1]
            print(f"  {name}: {r['generation_s_per_step']:.2f} s of generation per step, {r['tokens_per_s']:.0f} "
                  f"tokens/s, {r['total_s']:.1f} s in all", flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
