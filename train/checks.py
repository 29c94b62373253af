"""Every value a training run reads, checked before any work: ``python -m train`` calls
``check(c)`` first, before a dataset is generated, a model built or a directory written.

Each refusal is a ``ConfigError`` naming the key, the bad value and what is allowed. Only the
stages that run are checked (``sft.enabled=false`` leaves ``sft`` alone), and only keys the
config has: ``model=hf`` has no sizes unless given. Greedy decoding needs no temperature:
evaluation always runs a greedy pass, and ``eval.temperature`` only divides the logits of the
``eval.num_samples`` sampled completions, so it must then be > 0 (0 would divide by zero).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from solvers.config import ConfigError, check_int_range

Name = Callable[[str], str]


def check(c: dict) -> None:
    """Refuse any bad value of the run config ``c`` (resolved, as ``python -m train`` has it)."""
    check_model(c["model"])
    if c["sft"].get("enabled"):
        check_trainer(c["sft"], lambda k: f"sft.{k}")
    if c["grpo"].get("enabled"):
        check_grpo(c["grpo"])
    if (c.get("improve") or {}).get("enabled"):
        check_improve(c)
    if c["eval"].get("enabled"):
        check_eval(c["eval"])


def positive(key: str, value: Any, why: str = "") -> None:
    """A finite number > 0 (an int or a float; not a bool, not a string)."""
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(key, f"must be a number > 0{why}, got {value!r}")


def optional_int(key: str, value: Any, lo: int, why: str) -> None:
    """null (``why`` says what null means) or an integer >= ``lo``."""
    if value is not None:
        if type(value) is not int or value < lo:
            raise ConfigError(key, f"must be null ({why}) or an integer >= {lo}, got {value!r}")


def check_model(m: dict) -> None:
    """Sizes of a model built from scratch (``model=tiny``); for ``model=hf`` only sizes given."""
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "max_position_embeddings"):
        if m.get(key) is not None:
            check_int_range(f"model.{key}", m[key], 1)
    if m.get("num_key_value_heads") is not None:
        check_int_range("model.num_key_value_heads", m["num_key_value_heads"], 1)
    hidden, heads = m.get("hidden_size"), m.get("num_attention_heads")
    if hidden is not None and heads is not None:
        if hidden % heads:
            raise ConfigError("model.hidden_size", f"{hidden} is not divisible by model.num_attention_heads "
                              f"({heads}): each head takes hidden_size / num_attention_heads dimensions")
        if (hidden // heads) % 2:
            raise ConfigError("model.hidden_size", f"{hidden} / model.num_attention_heads ({heads}) = "
                              f"{hidden // heads} dimensions per head; rotary position embeddings need an even number")
    kv = m.get("num_key_value_heads")
    if heads is not None and kv is not None and heads % kv:
        raise ConfigError("model.num_attention_heads", f"{heads} is not divisible by model.num_key_value_heads "
                          f"({kv}): each key/value head serves a whole group of attention heads")


def check_trainer(group: dict, name: Name) -> None:
    """Keys shared by the ``sft`` and ``grpo`` groups (TRL fields and the project's own);
    ``name(key)`` is the key as the user wrote it."""
    if "learning_rate" in group:
        positive(name("learning_rate"), group["learning_rate"])
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if key in group:
            check_int_range(name(key), group[key], 1)
    if "max_minutes" in group and group["max_minutes"] is not None:
        positive(name("max_minutes"), group["max_minutes"], " (null: no time limit)")
    if "max_length" in group:
        optional_int(name("max_length"), group["max_length"], 1, "no truncation")
    if "length_buckets" in group:
        optional_int(name("length_buckets"), group["length_buckets"], 1, "off")
    check_duration(group, name)


def check_duration(group: dict, name: Name) -> None:
    """``max_steps``, ``num_train_epochs`` and ``warmup_steps`` as transformers reads them:
    max_steps > 0 is the run's length and -1 hands it to num_train_epochs (any max_steps < 0
    does; 0 runs one step at learning rate 0), so only -1 is taken; epochs may be a fraction;
    warmup_steps is a whole number of steps, or below 1 a share of the run's steps."""
    steps = group.get("max_steps", -1)
    if "max_steps" in group and (type(steps) is not int or not (steps >= 1 or steps == -1)):
        raise ConfigError(name("max_steps"), f"must be an integer >= 1, or -1 (train for {name('num_train_epochs')} "
                          f"epochs), got {steps!r}")
    if "num_train_epochs" in group:
        epochs = group["num_train_epochs"]
        if type(epochs) not in (int, float) or not math.isfinite(epochs) or epochs < 0:
            raise ConfigError(name("num_train_epochs"), f"must be a number >= 0, got {epochs!r}")
        if steps == -1 and epochs == 0:
            raise ConfigError(name("num_train_epochs"), f"must be > 0 when {name('max_steps')} is -1 (the epochs "
                              f"then set the run's length: 0 trains nothing), got {epochs!r}")
    if "warmup_steps" in group:
        warmup = group["warmup_steps"]
        if (type(warmup) not in (int, float) or not math.isfinite(warmup) or warmup < 0
                or (warmup >= 1 and warmup != int(warmup))):
            raise ConfigError(name("warmup_steps"), f"must be a whole number of steps >= 0, or a share from 0 to "
                              f"below 1 of the run's steps, got {warmup!r}")


def check_grpo(g: dict) -> None:
    from train.grpo import check_generator

    check_trainer(g, lambda k: f"grpo.{k}")
    check_generator(g)  # grpo.generator, and TRL sampling settings that generator=project would ignore
    # GRPO's advantage is a completion's reward against the others of its prompt: one alone has none
    check_int_range("grpo.num_generations", g.get("num_generations"), 2)
    if "max_completion_length" in g:
        check_int_range("grpo.max_completion_length", g["max_completion_length"], 1)
    if "temperature" in g:
        positive("grpo.temperature", g["temperature"], " (GRPO samples every completion)")
    if "beta" in g and (type(g["beta"]) not in (int, float) or not math.isfinite(g["beta"]) or g["beta"] < 0):
        raise ConfigError("grpo.beta", f"must be a number >= 0 (the KL penalty; 0: none), got {g['beta']!r}")
    optional_int("grpo.n_prompts", g.get("n_prompts"), 1, "every train prompt")


def check_improve(c: dict) -> None:
    from train import improve

    improve.check(c)
    imp = c["improve"]
    positive("improve.temperature", imp.get("temperature"), " (improve always samples)")
    # each retraining is SFT with improve.sft over the sft group, whether or not sft.enabled
    over = imp.get("sft") or {}
    check_trainer(improve.retrain_config(c)["sft"], lambda k: f"improve.sft.{k}" if k in over else f"sft.{k}")


def check_eval(e: dict) -> None:
    """``eval``, then each pass of ``eval.extra_decodings`` as it will run (its overrides over
    ``eval``); a value an extra pass inherits is named by its ``eval`` key. An extra pass that
    changes ``num_samples`` and not ``k`` reports the inherited k that fit its samples
    (``self_backtrack: {num_samples: 0}``: greedy only), as ``train.evaluate`` does."""
    from train import decode
    from train.evaluate import check_extra, extra_config

    decode.check(e)
    check_extra(e)
    check_pass(e, lambda k: f"eval.{k}")
    for mode, over in (e.get("extra_decodings") or {}).items():
        over = over or {}
        e2 = extra_config(e, mode)
        if "num_samples" in over and "k" not in over and type(e2["num_samples"]) is int:
            e2["k"] = [k for k in e2.get("k") or [] if k <= e2["num_samples"]]
        check_pass(e2, lambda k, mode=mode, over=over: f"eval.extra_decodings.{mode}.{k}" if k in over else f"eval.{k}")


def check_pass(e: dict, name: Name) -> None:
    """One evaluation pass: greedy on ``n_problems``, then ``num_samples`` samples each at
    ``temperature`` for pass@k, k in ``k``."""
    optional_int(name("n_problems"), e.get("n_problems"), 1, "the whole split")
    check_int_range(name("max_new_tokens"), e.get("max_new_tokens"), 1)
    check_int_range(name("batch_size"), e.get("batch_size"), 1)
    n = e.get("num_samples")
    check_int_range(name("num_samples"), n, 0)
    ks = e.get("k")
    if n == 0:
        if ks:
            raise ConfigError(name("k"), f"{ks} asks for pass@k, but {name('num_samples')} is 0 (greedy only, "
                              f"no samples to count): set k to [] or num_samples to at least the largest k")
        return
    positive(name("temperature"), e.get("temperature"),
             " when samples are drawn (greedy accuracy is always measured; num_samples=0 for greedy only)")
    if not isinstance(ks, list):
        raise ConfigError(name("k"), f"must be a list of pass@k values from 1 to {name('num_samples')} ({n}), "
                          f"got {ks!r}")
    for k in ks:
        if type(k) is not int or not 1 <= k <= n:
            raise ConfigError(name("k"), f"pass@k needs 1 <= k <= {name('num_samples')} ({n}), got {k!r} in {ks}")
