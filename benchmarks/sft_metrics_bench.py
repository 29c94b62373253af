"""SFT step time with TRL's per-step metrics and without: python -m benchmarks.sft_metrics_bench

TRL 1.16's SFTTrainer.compute_loss makes five host syncs a micro-batch for entropy, token
accuracy and num_tokens; train/sft.py's trainer (``trainer_class``) skips them on steps that
do not log. This times whole training steps (forward, backward, optimizer) of the demo's model
(conf/model/tiny.yaml) and batch on 3-number Countdown backspace records, TRL's compute_loss
against the project's, in alternating blocks of ``--steps`` steps in one process, so that
a shared machine's load falls on both alike. Medians per step, in ms. ``--device cuda`` on a
GPU, in bf16 autocast as ``hardware=gpu`` trains (the syncs cost there; on a CPU, microseconds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", type=int, default=2, help="per_device_train_batch_size (sft default: 2)")
    ap.add_argument("--steps", type=int, default=40, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=8, help="timed blocks per side, alternating")
    args = ap.parse_args(argv)

    import torch
    import yaml
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from train.data import dataset_dir, read_split
    from train.model import tiny_config
    from train.sft import examples, trainer_class
    from train.tokenizer import build_char_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        data = {**yaml.safe_load((ROOT / "conf/data/countdown3.yaml").read_text()),
                "n": 2000, "n_val": 0, "n_test": 0, "cache_dir": tmp}
        records = read_split(dataset_dir(data), "train")
        tok = build_char_tokenizer([r["Question"] + r["Reasoning"] for r in records])
        torch.manual_seed(0)
        sizes = yaml.safe_load((ROOT / "conf/model/tiny.yaml").read_text())
        model = AutoModelForCausalLM.from_config(tiny_config(sizes, tok))
        rows, _ = examples(records, tok, mask_erased=False, max_length=1024)
        cuda = args.device == "cuda"
        config = SFTConfig(output_dir=str(Path(tmp) / "run"), use_cpu=not cuda, bf16=cuda,
                           gradient_checkpointing=False, dataloader_num_workers=0, report_to="none",
                           save_strategy="no", disable_tqdm=True, completion_only_loss=True,
                           per_device_train_batch_size=args.batch, logging_steps=250, max_steps=10**6)
        trainer = trainer_class()(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok)
        trainer.state.logging_steps = config.logging_steps  # as train() sets it: no step timed here logs
        trainer.create_optimizer_and_scheduler(num_training_steps=config.max_steps)
        loader = iter(trainer.get_train_dataloader())
        batches = [next(loader) for _ in range(args.steps)]
        trl_loss = types.MethodType(SFTTrainer.compute_loss, trainer)
        times: dict[str, list[float]] = {"TRL's compute_loss": [], "train/sft.py": []}
        for block in range(args.blocks + 1):  # block 0 warms both sides up and is not counted
            for side in (times if block % 2 else reversed(times)):
                if side == "TRL's compute_loss":
                    trainer.compute_loss = trl_loss
                else:
                    trainer.__dict__.pop("compute_loss", None)
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for batch in batches:
                    trainer.training_step(trainer.model, batch, (batch["labels"] != -100).sum())
                    trainer.optimizer.step()
                    trainer.model.zero_grad()
                if cuda:
                    torch.cuda.synchronize()
                if block:
                    times[side].append(1000 * (time.perf_counter() - t0) / len(batches))
                trainer._metrics["train"].clear()
    print(f"SFT steps, {args.device}, batch {args.batch}, {args.blocks} blocks of {args.steps} steps per side:")
    for side, ms in times.items():
        print(f"  {side:<20} median {statistics.median(ms):7.2f} ms/step  (min {min(ms):.2f}, max {max(ms):.2f})")


if __name__ == "__main__":
    main()
