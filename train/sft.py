"""Supervised warm-up with TRL's SFTTrainer on prompt/completion rows.

Rows are tokenized here, not by TRL, so that ``sft.mask_erased`` can leave the text that a
later backspace erases out of the loss (Self-Backtracking trains on the marker, never on the
wrong step): TRL turns our ``completion_mask`` into labels.
"""

from __future__ import annotations

import functools
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


# The lines of TRL 1.16's SFTTrainer.compute_loss that ``quiet_loss`` repeats, verbatim:
# tests/test_sft.py fails if TRL's method no longer contains each of them.
TRL_LOSS_LINES = (
    'inputs["use_cache"] = False',
    "outputs = model(**inputs, fused_lm_head=True)",
    "per_token_loss = -outputs.log_probs  # zero on ignored positions",
    'if self.args.loss_type == "dft":',
    "per_token_loss = per_token_loss * outputs.log_probs.exp().detach()",
    "num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch",
    "loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)",
    "if self.args.average_tokens_across_devices and num_items_in_batch is not None:",
    "loss = loss * (self.accelerator.num_processes // self.get_tp_size())",
    'num_tokens_in_batch = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()',
    "self._total_train_tokens += num_tokens_in_batch // self._tp_size",
    'self._metrics[mode]["num_tokens"] = [self._total_train_tokens]',
)


@functools.cache
def trainer_class():
    """TRL's SFTTrainer, with its per-step metrics computed only on the steps that log.

    TRL 1.16 appends the entropy and mean token accuracy of every micro-batch to a list and
    averages the list when it logs; each append is a ``num_valid > 0`` test and an
    ``.item()``, and the ``num_tokens`` count is one more ``.item()``: five host syncs a
    micro-batch, each a stall on a GPU, on all the steps that log nothing (249 of every 250
    with sft.logging_steps 250). Here a micro-batch of a step that will not log takes ``quiet_loss``: TRL's loss,
    the same lines in the same order (``TRL_LOSS_LINES``), no metrics, and the token count
    summed on the device until the next logging step. A step that logs, an evaluation, and
    any path TRL handles that ``quiet_loss`` does not (a custom loss, label smoothing, MoE
    auxiliary loss, sequence parallelism, padding-free rows) run TRL's own compute_loss.

    What changes in the logs: ``entropy`` and ``mean_token_accuracy`` are those of the
    logging step's micro-batches, not the mean over every step since the last log, and the
    end-of-training summary no longer carries the trailing steps' mean of them. ``loss``
    (the Trainer's, averaged on the device) and ``num_tokens`` are as TRL logs them.
    """
    import torch
    from transformers.trainer_utils import IntervalStrategy
    from trl import SFTTrainer

    class Trainer(SFTTrainer):
        length_buckets: tuple | None = None  # (lengths, batch size, bucket_batches, seed): sft.length_buckets
        _pending_tokens = None               # tokens of the quiet micro-batches, a device tensor, not yet counted

        def _get_train_sampler(self, train_dataset=None):
            if self.length_buckets is None:
                return super()._get_train_sampler(train_dataset)
            return LengthBuckets(*self.length_buckets)

        def logs_this_step(self) -> bool:
            """Whether the optimizer step being computed will log: DefaultFlowCallback's rule,
            asked before the step (global_step counts the steps done). With
            logging_strategy=epoch the end of an epoch is not known here, so every step computes."""
            step, args = self.state.global_step + 1, self.args
            if step == 1 and args.logging_first_step:
                return True
            if args.logging_strategy == IntervalStrategy.STEPS:
                return step % self.state.logging_steps == 0
            return args.logging_strategy == IntervalStrategy.EPOCH

        def quiet(self, inputs, return_outputs: bool) -> bool:
            parallel = getattr(self.accelerator, "parallelism_config", None)
            return (self.model.training and not return_outputs and not self.logs_this_step()
                    and self.compute_loss_func is None and self.label_smoother is None
                    and not self.aux_loss_enabled and "attention_mask" in inputs
                    and not (parallel is not None and getattr(parallel, "sp_enabled", False)))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.quiet(inputs, return_outputs):
                self.count_pending_tokens()  # TRL's num_tokens then counts the quiet steps too
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return self.quiet_loss(model, inputs, num_items_in_batch)

        def quiet_loss(self, model, inputs, num_items_in_batch=None):
            """TRL's default loss (``TRL_LOSS_LINES``), without its metrics and host syncs."""
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            per_token_loss = -outputs.log_probs  # zero on ignored positions
            if self.args.loss_type == "dft":
                per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum() // self._tp_size
            self._pending_tokens = tokens if self._pending_tokens is None else self._pending_tokens + tokens
            return loss

        def count_pending_tokens(self) -> None:
            """Add the quiet steps' tokens to TRL's count: one ``.item()`` per logging step."""
            if self._pending_tokens is not None:
                self._total_train_tokens += int(self._pending_tokens.item())
                self._pending_tokens = None
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

        def log(self, logs, start_time=None):
            self.count_pending_tokens()  # the end-of-training summary, after quiet steps
            super().log(logs, start_time)

    return Trainer


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

    Trainer = trainer_class()
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    if bucket_batches:
        trainer.length_buckets = ([len(r["input_ids"]) for r in rows],
                                  args.per_device_train_batch_size * args.gradient_accumulation_steps,
                                  bucket_batches, args.seed)
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
