"""make bench (training part): throughput of the default tiny model on this machine.

SFT tokens per second (prompt + completion tokens through forward and backward) and GRPO
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
    print(f"train benchmark: tiny model ({m['parameters'] / 1e6:.2f}M parameters), 3-number Countdown backspace traces")
    print(f"  SFT:  {m['sft_tokens_per_second']:.0f} tokens/s  ({m['sft_steps']} steps of the default batch in {m['sft_seconds']} s)")
    print(f"  GRPO: {m['grpo_completions_per_second']:.2f} completions/s  ({m['grpo_steps']} steps of 16 completions "
          f"in {m['grpo_seconds']} s)")


if __name__ == "__main__":
    main()
