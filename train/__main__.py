"""python -m train [experiment=...]: sft -> grpo -> improve -> eval (see conf/train.yaml).

The run directory (Hydra's output directory, printed last) holds the resolved config,
``sft/`` and ``grpo/`` checkpoints with their tokenizer, ``improve/iter-<i>/`` (kept
records, stats and the retrained checkpoint) when ``improve.enabled``, ``metrics.json`` and
``samples.jsonl``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import conf  # noqa: F401  (stores the task config group, made from the tasks' Config dataclasses)
from solvers.config import ConfigError


def run(c: dict, run_dir: Path) -> dict:
    """Check everything, then train and evaluate as the config says; return the metrics."""
    from train import grpo, sft
    from train.checks import check
    from train.data import FORMAT_TAGS, check_run_format, dataset_dir, prompt_of, read_split
    from train.evaluate import evaluate
    from train.model import build_model, count_parameters, fit_embeddings, lora_config, place
    from train.tokenizer import add_markers, build_char_tokenizer, check_ordinary, load_tokenizer, marker_strings
    from train.trl_configs import grpo_config, sft_config

    check(c)  # every bad value (train/checks.py), before any data, model or file is made
    run_dir.mkdir(parents=True, exist_ok=True)
    do = {stage: c[stage]["enabled"] for stage in ("sft", "grpo", "eval")}
    do["improve"] = (c.get("improve") or {}).get("enabled", False)
    if do["improve"]:
        from train import improve
    data_dir = dataset_dir(c["data"])
    if (data_dir / "manifest.json").exists():
        from generate.write import summary
        print(summary(data_dir))
    train_records = read_split(data_dir, "train")
    eval_records = read_split(data_dir, c["eval"]["split"]) if do["eval"] else []
    if (do["sft"] or do["grpo"] or do["improve"]) and not train_records:
        raise ConfigError("data", f"{data_dir}/train holds no records")
    if do["eval"] and not eval_records:
        raise ConfigError("eval.split", f"{data_dir}/{c['eval']['split']} holds no records")

    # Tokenizer: from the checkpoint we start from, the hf model's own, or built from the data.
    if c.get("init_from"):
        tokenizer = load_tokenizer(c["init_from"])
    elif c["tokenizer"]["kind"] == "checkpoint":
        if c["model"]["kind"] != "hf":
            raise ConfigError("tokenizer", "tokenizer=checkpoint needs model=hf model.path=DIR")
        tokenizer = load_tokenizer(c["model"]["path"])
    else:
        tokenizer = build_char_tokenizer(r["Question"] + r["Reasoning"] for r in train_records + eval_records)
    first_new, fmt = len(tokenizer), c["data"].get("format", "plain")
    if c["tokenizer"].get("add_markers"):  # <backtrack> (+ outcome markers) as one ordinary token each
        tokenizer, first_new = add_markers(tokenizer, marker_strings(c))
    check_run_format(c, tokenizer, train_records + eval_records)  # data.format
    check_ordinary(tokenizer, marker_strings(c)[1:] + list(FORMAT_TAGS[fmt]))

    # Every config is built before any training: a bad key fails now, not after SFT.
    sft_args = sft_config(c, run_dir / "sft") if do["sft"] else None
    grpo_args = grpo_config(c, run_dir / "grpo") if do["grpo"] else None
    if do["improve"]:
        sft_config(improve.retrain_config(c), run_dir / "improve")  # a bad improve.sft key fails now
    longest_prompt = max(len(tokenizer(prompt_of(r["Question"], tokenizer, fmt), add_special_tokens=False)["input_ids"])
                         for r in train_records + eval_records)
    if sft_args is not None and sft_args.max_length is not None and longest_prompt >= sft_args.max_length:
        raise ConfigError("sft.max_length", f"{sft_args.max_length} tokens leaves no room for a completion: "
                          f"the longest prompt is {longest_prompt} tokens")
    if c["model"]["kind"] == "tiny":
        budget = c["model"]["max_position_embeddings"]
        need = longest_prompt + max(c["eval"]["max_new_tokens"] if do["eval"] else 0,
                                    grpo_args.max_completion_length if grpo_args else 0,
                                    c["improve"]["max_new_tokens"] if do["improve"] else 0)
        if need > budget:
            raise ConfigError("model.max_position_embeddings", f"{budget} positions are fewer than the longest "
                              f"prompt ({longest_prompt} tokens) plus the completion budget ({need - longest_prompt})")
    model = place(build_model(c, tokenizer, c.get("init_from")), c)  # on hardware's device, for every stage
    new_ids = fit_embeddings(model, tokenizer, first_new, bool(c["tokenizer"].get("add_markers")))
    peft_config = None if hasattr(model, "peft_config") else lora_config(c["peft"], new_ids)  # a LoRA init_from has its own
    metrics: dict = {"parameters": count_parameters(model), "dataset": str(data_dir),
                     "style": c["data"]["style"], "train_records": len(train_records)}
    print(f"model: {metrics['parameters'] / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}; "
          f"data: {data_dir} ({len(train_records)} train records)")

    if do["sft"]:
        model, m = sft.train(model, tokenizer, train_records, c, sft_args, run_dir / "sft", peft_config)
        metrics.update(m)
        peft_config = None  # adapters, if any, are on the model now
    if do["grpo"]:
        model, m = grpo.train(model, tokenizer, train_records, c, grpo_args, run_dir / "grpo", peft_config)
        metrics.update(m)
    if do["improve"]:  # train puzzles only (train/improve.py); after GRPO, or SFT without it
        model, metrics["improve"] = improve.run(model, tokenizer, train_records, data_dir, c, run_dir,
                                                None if do["grpo"] else peft_config)
    if do["eval"]:
        metrics.update(evaluate(model, tokenizer, eval_records, c["eval"], run_dir))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (run_dir / "config.json").write_text(json.dumps(c, indent=2))
    return metrics


def table(metrics: dict) -> str:
    cols = ["accuracy"] + sorted(k for k in metrics if k.startswith("pass@")) + [
        "mean_completion_tokens", "backspace_use", "malformed_rate", "no_answer_rate", "loop_rate"]
    cols = [k for k in cols if k in metrics]
    head = "| " + " | ".join(cols) + " |"
    rule = "|" + "---|" * len(cols)
    row = "| " + " | ".join(f"{metrics[k]:.3f}" if isinstance(metrics[k], float) else str(metrics[k])
                            for k in cols) + " |"
    return "\n".join([head, rule, row])


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("hydra", None)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    t0 = time.perf_counter()
    try:
        metrics = run(c, run_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if "accuracy" in metrics:
        print(f"evaluated {metrics['n_problems']} held-out problems ({metrics['split']}), "
              f"style {metrics['style']}, {time.perf_counter() - t0:.0f} s in all:")
        print(table(metrics))
    print(run_dir)


if __name__ == "__main__":
    main()
