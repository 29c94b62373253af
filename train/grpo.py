"""GRPO with TRL's GRPOTrainer and verifiable rewards (DeepSeek-R1's recipe after SFT)."""

from __future__ import annotations

import time
from pathlib import Path

from train.data import prompt_of, puzzle_column
from train.model import expose_lm_head_bias
from train.rewards import REWARDS
from train.sft import WallClockLimit
from train.tokenizer import SUCCESS
from train.trl_configs import grpo_rewards


def _without_bos(prompt: str, tokenizer) -> str:
    """A chat-template prompt less its BOS text when the tokenizer adds a BOS itself: TRL
    tokenizes a text prompt with special tokens, and two BOS would start every prompt
    (DeepSeek-R1-Distill's template writes one, and its tokenizer adds one)."""
    bos = tokenizer.bos_token
    if bos and prompt.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
        return prompt[len(bos):]
    return prompt


def train(model, tokenizer, records: list[dict], cfg: dict, args, out_dir: Path, peft_config=None):
    from datasets import Dataset
    from trl import GRPOTrainer

    g = cfg["grpo"]
    if g.get("n_prompts"):
        records = records[: g["n_prompts"]]
    marker = SUCCESS if cfg["sft"].get("outcome_marker") else ""  # a model SFT-trained with markers: condition on success
    fmt = cfg["data"].get("format", "plain")  # data.format: the prompt's layout, and where rewards read the answer
    ds = Dataset.from_list([{"prompt": _without_bos(prompt_of(r["Question"], tokenizer, fmt), tokenizer) + marker,
                             "puzzle": puzzle_column(r),
                             "task": r["task"], "format": fmt} for r in records])
    callbacks = [WallClockLimit(g["max_minutes"])] if g.get("max_minutes") else []
    trainer = GRPOTrainer(model=model, reward_funcs=[REWARDS[name] for name in grpo_rewards(cfg)[0]], args=args,
                          train_dataset=ds, processing_class=tokenizer, peft_config=peft_config,
                          callbacks=callbacks)
    expose_lm_head_bias(trainer.model)  # LoRA with tokenizer.add_markers: the new rows train beside the adapters
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    completions = trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
    rewards = [h for h in trainer.state.log_history if "reward" in h]
    return trainer.model, {"grpo_seconds": round(elapsed, 1), "grpo_steps": trainer.state.global_step,
                           "grpo_completions_per_second": round(completions / elapsed, 2),
                           "grpo_reward_first": rewards[0]["reward"] if rewards else None,
                           "grpo_reward_last": rewards[-1]["reward"] if rewards else None}
