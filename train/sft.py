"""Supervised warm-up with TRL's SFTTrainer on prompt/completion rows.

Rows are tokenized here, not by TRL, so that ``sft.mask_erased`` can leave the text that a
later backspace erases out of the loss (Self-Backtracking trains on the marker, never on the
wrong step): TRL turns our ``completion_mask`` into labels.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from train.data import failed_chain, sft_example
from train.model import expose_lm_head_bias
from train.tokenizer import FAILURE, SUCCESS


class LengthBuckets:
    """Batches of similar length, in random order: a torch sampler of row indices.

    Every epoch the rows are shuffled and cut into buckets of ``bucket_batches`` batches;
    each bucket is sorted by length and cut into batches, and all batches are shuffled
    together. Backspace traces vary from ~90 to ~700 tokens, so a random batch of 16 pads
    to about twice its tokens (batch 16 here: 1.05 steps/s random, 1.63 bucketed).
    transformers' ``group_by_length`` groups too, but walks each bucket from longest to
    shortest batch, a saw-tooth curriculum of period 50 steps that trained far worse.

    >>> s = LengthBuckets([5, 1, 9, 3, 7, 2, 8, 4], batch_size=2, bucket_batches=4, seed=0)
    >>> order = list(s)
    >>> batches = [order[i:i + 2] for i in range(0, 8, 2)]
    >>> sorted(i for b in batches for i in b) == list(range(8))
    True
    >>> sorted(tuple(sorted([5, 1, 9, 3, 7, 2, 8, 4][i] for i in b)) for b in batches)
    [(1, 2), (3, 4), (5, 7), (8, 9)]
    """

    def __init__(self, lengths: list[int], batch_size: int, bucket_batches: int, seed: int) -> None:
        self.lengths, self.batch_size, self.bucket = list(lengths), batch_size, batch_size * bucket_batches
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        batches = []
        for start in range(0, len(order), self.bucket):
            bucket = sorted(order[start:start + self.bucket], key=self.lengths.__getitem__)
            batches += [bucket[i:i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield from batches[b]


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


def outcome_variants(record: dict) -> list[tuple[dict, str]]:
    """``sft.outcome_marker``: the record after ``<success>``, and its failed chain
    (``train.data.failed_chain``: the same work, a wrong final answer) after ``<failure>``."""
    failed = failed_chain(record)
    return [(record, SUCCESS)] + ([({**record, "Reasoning": failed}, FAILURE)] if failed is not None else [])


def examples(records: list[dict], tokenizer, mask_erased: bool, max_length: int | None,
             outcome_marker: bool = False, fmt: str = "plain") -> tuple[list[dict], int]:
    rows, dropped = [], 0
    for record in records:
        for rec, marker in outcome_variants(record) if outcome_marker else [(record, "")]:
            ex = sft_example(rec, tokenizer, mask_erased, marker, fmt)
            if max_length is not None and len(ex["input_ids"]) > max_length:
                dropped += 1  # cut short it would lose its answer: leave it out
                continue
            rows.append(ex)
    return rows, dropped


def train(model, tokenizer, records: list[dict], cfg: dict, args, out_dir: Path, peft_config=None):
    from datasets import Dataset
    from trl import SFTTrainer

    marked = bool(cfg["sft"].get("outcome_marker"))
    rows, dropped = examples(records, tokenizer, cfg["sft"]["mask_erased"], args.max_length, marked,
                             cfg["data"].get("format", "plain"))
    if marked:
        print(f"sft: outcome markers: {len(rows) + dropped - len(records)} failed chains beside {len(records)} "
              "successful ones")
    if dropped:
        print(f"sft: left out {dropped} of {len(records)} records longer than sft.max_length={args.max_length} tokens")
    callbacks = [WallClockLimit(cfg["sft"]["max_minutes"])] if cfg["sft"].get("max_minutes") else []
    bucket_batches = cfg["sft"].get("length_buckets")

    class Trainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            if not bucket_batches:
                return super()._get_train_sampler(train_dataset)
            return LengthBuckets([len(r["input_ids"]) for r in rows],
                                 args.per_device_train_batch_size * args.gradient_accumulation_steps,
                                 bucket_batches, args.seed)

    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    expose_lm_head_bias(trainer.model)  # LoRA with tokenizer.add_markers: the new rows train beside the adapters
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
