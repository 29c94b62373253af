"""GRPO with TRL's GRPOTrainer and verifiable rewards (DeepSeek-R1's recipe after SFT).

Who writes GRPO's completions: ``grpo.generator``.

- ``trl`` (default): TRL's own path, ``model.generate`` on the whole generation batch (or,
  with ``grpo.use_transformers_continuous_batching``, transformers' paged continuous batching).
- ``project``: the project's visible decoder (``train.decode.sample_ids``: continuous
  batching, tokens kept on the device, a host look every ``SYNC_EVERY`` steps on a GPU),
  plugged in through TRL's public ``rollout_func`` hook. It samples at ``grpo.temperature``,
  up to ``grpo.max_completion_length`` tokens, one completion per row TRL hands it (TRL's
  sampler already repeats each prompt ``grpo.num_generations`` times), all rows of the
  generation batch at once as TRL's path does (a finished row leaves the batch). It returns
  what TRL's path returns: TRL's own tokenization of the prompt text, each completion up to
  and including its first EOS (any of TRL's ``eos_token_ids``), and no sampling
  log-probabilities; TRL then decodes with special tokens stripped, builds the masks and
  scores the rewards as always (tests/test_grpo_generator.py holds the two paths equal on
  the same tokens). Sampling settings the decoder does not implement (top_p, top_k, min_p,
  repetition_penalty, generation_kwargs, vLLM, ...) are refused with ``project``
  (``check_generator``), never ignored.
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
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


GENERATORS = ("trl", "project")
# TRL generation settings that grpo.generator=project does not implement, with the values that
# mean "off" (TRL 1.16's defaults): anything else is refused rather than silently ignored.
PROJECT_OFF = {"use_vllm": (False,), "use_transformers_continuous_batching": (False,), "top_p": (1.0,),
               "top_k": (0, None), "min_p": (None,), "repetition_penalty": (1.0,), "generation_kwargs": (None,),
               "cache_implementation": (None,)}


def check_generator(g: dict) -> None:
    """Refuse a bad ``grpo.generator``, or a TRL generation setting that ``project`` would ignore."""
    from solvers.config import ConfigError, check_choice

    generator = g.get("generator", "trl")
    check_choice("grpo.generator", generator, GENERATORS)
    if generator == "project":
        for key, off in PROJECT_OFF.items():
            if key in g and g[key] not in off:
                raise ConfigError(f"grpo.{key}", f"{g[key]!r} is a setting of TRL's own generation; "
                                  f"grpo.generator=project samples at grpo.temperature only (set grpo.{key} to "
                                  f"{off[0]!r}, or grpo.generator=trl)")


def project_rollout(prompts: list, trainer) -> dict:
    """TRL's ``rollout_func`` for ``grpo.generator=project``: one completion per row of
    ``prompts`` (the generation batch, each prompt already repeated ``num_generations`` times),
    from ``train.decode.sample_ids``. The prompts are tokenized as TRL tokenizes a text prompt
    (with the tokenizer's special tokens), the model is unwrapped as TRL unwraps it for
    ``model.generate``, and ``logprobs`` is None, as on TRL's own path."""
    import torch
    from trl.models import unwrap_model_for_generation

    from train.decode import sample_ids

    if not all(isinstance(p, str) for p in prompts):
        raise TypeError("grpo.generator=project takes text prompts (train/grpo.py renders every data.format as text)")
    tokenizer, args = trainer.processing_class, trainer.args
    prompt_ids = tokenizer(text=prompts)["input_ids"]   # TRL's _tokenize_prompts for a text prompt
    dist = getattr(trainer, "_dist", None)              # FSDP: TRL gathers the full weights for generation
    summon = dist.summon_full_params(trainer.model_wrapped, recurse=False) if dist is not None else nullcontext()
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                     gather_deepspeed3_params=args.ds3_gather_for_generation,
                                     gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs) as model, \
            torch.no_grad(), summon:
        completion_ids = sample_ids(model, tokenizer, prompt_ids, temperature=trainer.temperature,
                                    max_new_tokens=trainer.max_completion_length, batch_size=len(prompt_ids),
                                    eos_ids=list(trainer.eos_token_ids))
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def build_trainer(model, tokenizer, dataset, reward_funcs, args, *, generator: str = "trl", **kwargs):
    """TRL's GRPOTrainer, with ``project_rollout`` as its ``rollout_func`` when ``generator``
    is ``project`` (TRL marks that hook experimental and warns once; the warning is silenced
    here, the hook pinned by tests/test_grpo_generator.py instead)."""
    from trl import GRPOTrainer

    from solvers.config import check_choice

    check_choice("grpo.generator", generator, GENERATORS)  # callers other than python -m train too
    hook = {"rollout_func": project_rollout} if generator == "project" else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'", category=UserWarning)
        return GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                           processing_class=tokenizer, **hook, **kwargs)


def train(model, tokenizer, records: list[dict], cfg: dict, args, out_dir: Path, peft_config=None):
    from datasets import Dataset

    g = cfg["grpo"]
    if g.get("n_prompts"):
        records = records[: g["n_prompts"]]
    marker = SUCCESS if cfg["sft"].get("outcome_marker") else ""  # a model SFT-trained with markers: condition on success
    fmt = cfg["data"].get("format", "plain")  # data.format: the prompt's layout, and where rewards read the answer
    ds = Dataset.from_list([{"prompt": _without_bos(prompt_of(r["Question"], tokenizer, fmt), tokenizer) + marker,
                             "puzzle": puzzle_column(r),
                             "task": r["task"], "format": fmt} for r in records])
    callbacks = [WallClockLimit(g["max_minutes"])] if g.get("max_minutes") else []
    trainer = build_trainer(model, tokenizer, ds, [REWARDS[name] for name in grpo_rewards(cfg)[0]], args,
                            generator=g.get("generator", "trl"), peft_config=peft_config, callbacks=callbacks)
    expose_lm_head_bias(trainer.model)  # LoRA with tokenizer.add_markers: the new rows train beside the adapters
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    completions = trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
    rewards = [h for h in trainer.state.log_history if "reward" in h]
    return trainer.model, {"grpo_generator": g.get("generator", "trl"),
                           "grpo_seconds": round(elapsed, 1), "grpo_steps": trainer.state.global_step,
                           "grpo_completions_per_second": round(completions / elapsed, 2),
                           "grpo_reward_first": rewards[0]["reward"] if rewards else None,
                           "grpo_reward_last": rewards[-1]["reward"] if rewards else None}
