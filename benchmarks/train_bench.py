"""make bench (training part): throughput of the default tiny model on this machine.

SFT tokens per second (prompt + completion tokens through forward and backward), beside a
plain PyTorch loop over the same batches and model (benchmarks/plain_loop.py), and GRPO
completions per second (generation, rewards and the update), on the default 3-number
Countdown backspace data, measured through the real trainers for a fixed number of steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "train", f"hydra.run.dir={run}", "data.n=2000", "data.n_val=0",
               "data.n_test=20", f"data.cache_dir={tmp}/cache", "sft.max_steps=40", "sft.warmup_steps=0",
               "sft.disable_tqdm=true", "grpo.max_steps=4", "eval.enabled=false"]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        m = json.loads((run / "metrics.json").read_text())
        plain = plain_loop(run, Path(tmp) / "cache")
        speeds = decoding_speeds(run / "grpo", Path(tmp) / "cache")
    print(f"train benchmark: tiny model ({m['parameters'] / 1e6:.2f}M parameters), 3-number Countdown backspace traces")
    print(f"  SFT:  {m['sft_tokens_per_second']:.0f} tokens/s  ({m['sft_steps']} steps of the default batch in {m['sft_seconds']} s)")
    print(f"        plain PyTorch loop, same batches and model: {plain['tokens_per_second']:.0f} tokens/s "
          f"({plain['seconds']} s); the trainer runs at {m['sft_tokens_per_second'] / plain['tokens_per_second']:.2f}x "
          "the plain loop's rate")
    print(f"  GRPO: {m['grpo_completions_per_second']:.2f} completions/s  ({m['grpo_steps']} steps of 16 completions "
          f"in {m['grpo_seconds']} s)")
    print("  eval (20 test puzzles, 1 greedy + 4 samples each, up to 560 tokens, the GRPO checkpoint):")
    for name, (n, seconds, tokens) in speeds.items():
        print(f"    {name:<16} {n / seconds:6.1f} completions/s  {tokens / seconds:7.0f} tokens/s  ({n} in {seconds:.1f} s)")


def plain_loop(run: Path, cache: Path) -> dict:
    """benchmarks.plain_loop over the run's train records, batches and model sizes."""
    import torch

    from benchmarks import plain_loop as plain
    from train.data import read_split

    data = next(p.parent for p in cache.rglob("manifest.json"))
    torch.manual_seed(0)
    return plain.for_run(run, read_split(data, "train"))


def decoding_speeds(checkpoint: Path, cache: Path) -> dict[str, tuple[int, float, int]]:
    """Completions, seconds and generated tokens for the same prompts through model.generate
    and through each eval.decoding of train/decode.py."""
    import time

    import torch
    from transformers import AutoModelForCausalLM

    from train import decode
    from train.data import prompt_of, read_split
    from train.decode import hf_generate
    from train.tokenizer import load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).eval()
    data = next(p.parent for p in cache.rglob("manifest.json"))
    prompts = [prompt_of(r["Question"]) for r in read_split(data, "test")[:20]]
    kw = dict(temperature=1.0, max_new_tokens=560, batch_size=64)
    runs = {"model.generate": lambda **a: hf_generate(model, tokenizer, prompts, **a, **kw)}
    for mode in ("visible", "erase"):
        runs[f"decoding={mode}"] = lambda mode=mode, **a: decode.generate(model, tokenizer, prompts, decoding=mode,
                                                                       **a, **kw)
    out = {}
    for name, fn in runs.items():
        t0 = time.perf_counter()
        rows = fn(num_return_sequences=1, do_sample=False) + fn(num_return_sequences=4, do_sample=True)
        seconds = time.perf_counter() - t0
        flat = [r for per_prompt in rows for r in per_prompt]
        out[name] = (len(flat), seconds, sum(r[1] for r in flat))
    return out


if __name__ == "__main__":
    main()
