"""The yardstick for the trainer's overhead: a minimal plain-PyTorch SFT loop over the same
batches and the same model.

Same rows (``train.sft.examples``), same batches (``train.sft.LengthBuckets`` with the run's
batch size, buckets and seed), the same completion-only loss (labels -100 on the prompt and the
padding), AdamW (fused where torch has it) at the run's learning rate, bf16 autocast where the
run trains in bf16 on a GPU. Nothing else: no logging, no metrics, no schedule. Tokens are
counted as ``train.sft`` counts them (every token of every row trained), so the trainer's
tokens/s divided by this loop's is the share of the arithmetic the trainer keeps.
"""

from __future__ import annotations

import time


def batches(rows: list[dict], batch_size: int, bucket_batches: int | None, seed: int, steps: int):
    """The first ``steps`` batches (lists of rows) in the order the run's sampler draws them."""
    import torch

    from train.sft import LengthBuckets

    sampler = LengthBuckets([len(r["input_ids"]) for r in rows], batch_size, bucket_batches, seed) \
        if bucket_batches else None
    out = []
    while len(out) < steps:  # one epoch after another, as the trainer draws them
        if sampler is not None:
            order = list(sampler)
        else:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + len(out))).tolist()
        out += [[rows[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    return out[:steps]


def collate(batch: list[dict], pad: int, device):
    """Right padded input_ids, attention_mask and labels (-100 outside the completion mask)."""
    import torch

    width = max(len(r["input_ids"]) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for j, r in enumerate(batch):
        n = len(r["input_ids"])
        ids[j, :n] = torch.tensor(r["input_ids"])
        mask[j, :n] = 1
        labels[j, :n] = torch.where(torch.tensor(r["completion_mask"]) == 1, ids[j, :n], -100)
    return ids.to(device), mask.to(device), labels.to(device)


def run(model, rows: list[dict], *, batch_size: int, bucket_batches: int | None, seed: int, steps: int,
        learning_rate: float, pad: int, bf16: bool = False) -> dict:
    """Train ``model`` (in place) for ``steps`` batches; tokens, seconds and tokens/s."""
    import torch

    device = next(model.parameters()).device
    plan = batches(rows, batch_size, bucket_batches, seed, steps)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")
    model.train()
    tokens = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for batch in plan:
        ids, mask, labels = collate(batch, pad, device)
        with autocast:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(len(r["input_ids"]) for r in batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds, 1)}


def for_run(run_dir, records: list[dict] | None = None) -> dict:
    """The plain loop for a finished ``python -m train`` run: its config, its tokenizer, a fresh
    model from its model config, its SFT steps (``metrics.json``), on hardware's device, over
    ``records`` (default: the run's train split, from the data cache)."""
    import json
    from pathlib import Path

    from train.model import build_model, place
    from train.sft import examples
    from train.tokenizer import load_tokenizer

    run_dir = Path(run_dir)
    c = json.loads((run_dir / "config.json").read_text())
    if records is None:
        from train.data import dataset_dir, read_split
        records = read_split(dataset_dir(c["data"]), "train")
    m = json.loads((run_dir / "metrics.json").read_text())
    tokenizer = load_tokenizer(run_dir / "sft")
    model = place(build_model(c, tokenizer), c)
    s = c["sft"]
    rows, _ = examples(records, tokenizer, s["mask_erased"], s.get("max_length"), bool(s.get("outcome_marker")))
    return run(model, rows, batch_size=s["per_device_train_batch_size"] * s.get("gradient_accumulation_steps", 1),
               bucket_batches=s.get("length_buckets"), seed=c["seed"], steps=m["sft_steps"],
               learning_rate=s["learning_rate"], pad=tokenizer.pad_token_id, bf16=bool(c["hardware"].get("bf16")))
