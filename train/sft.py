"""Supervised warm-up with TRL's SFTTrainer on prompt/completion rows.

Rows are tokenized here, not by TRL, so that ``sft.mask_erased`` can leave the text that a
later backspace erases out of the loss (Self-Backtracking trains on the marker, never on the
wrong step): TRL turns our ``completion_mask`` into labels.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from train.data import sft_example


class WallClockLimit(TrainerCallback):
    """Stops training after ``minutes`` of wall-clock time, for runs held to a time budget."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.start = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.start > 60 * self.minutes:
            control.should_training_stop = True
        return control


def examples(records: list[dict], tokenizer, mask_erased: bool, max_length: int | None) -> tuple[list[dict], int]:
    rows, dropped = [], 0
    for record in records:
        ex = sft_example(record, tokenizer, mask_erased)
        if max_length is not None and len(ex["input_ids"]) > max_length:
            dropped += 1  # cut short it would lose its answer: leave it out
            continue
        rows.append(ex)
    return rows, dropped


def train(model, tokenizer, records: list[dict], cfg: dict, args, out_dir: Path, peft_config=None):
    from datasets import Dataset
    from trl import SFTTrainer

    rows, dropped = examples(records, tokenizer, cfg["sft"]["mask_erased"], args.max_length)
    if dropped:
        print(f"sft: left out {dropped} of {len(records)} records longer than sft.max_length={args.max_length} tokens")
    callbacks = [WallClockLimit(cfg["sft"]["max_minutes"])] if cfg["sft"].get("max_minutes") else []
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    t0 = time.perf_counter()
    result = trainer.train()
    elapsed = time.perf_counter() - t0
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    tokens = sum(len(r["input_ids"]) for r in rows) * (trainer.state.global_step * args.per_device_train_batch_size
                                                        * args.gradient_accumulation_steps) / max(1, len(rows))
    return trainer.model, {"sft_seconds": round(elapsed, 1), "sft_steps": trainer.state.global_step,
                           "sft_train_loss": round(result.training_loss, 4), "sft_records": len(rows),
                           "sft_tokens_per_second": round(tokens / elapsed, 1)}
