"""train/checks.py: every bad value is refused before any work, naming the key; every shipped
config passes."""

import itertools
import os
import subprocess
import sys

import pytest
import yaml

from solvers.config import ConfigError
from tests.conftest import ROOT
from tests.test_train import compose  # the run config as python -m train resolves it


IMPROVE = "improve.enabled=true"

# (overrides on experiment=smoke, the key the error must name, how the message shows the bad
# value, why the row is there)
BAD = [
    # learning rates <= 0
    (["sft.learning_rate=-0.001"], "sft.learning_rate", "-0.001", "failed inside torch with no key named"),
    (["sft.learning_rate=0"], "sft.learning_rate", "got 0", "trains nothing, silently"),
    (["sft.learning_rate=nan"], "sft.learning_rate", "nan", "nan is not > 0 either"),
    (["grpo.learning_rate=-0.001"], "grpo.learning_rate", "-0.001",
     "trained and saved SFT first, then a torch traceback"),
    ([IMPROVE, "improve.sft.learning_rate=0"], "improve.sft.learning_rate", "got 0", "the retraining's own rate"),
    # batch sizes < 1
    (["sft.per_device_train_batch_size=0"], "sft.per_device_train_batch_size", "got 0", "no rows per step"),
    (["sft.gradient_accumulation_steps=0"], "sft.gradient_accumulation_steps", "got 0", "no micro-batches per step"),
    (["grpo.per_device_train_batch_size=0"], "grpo.per_device_train_batch_size", "got 0",
     "0 is divisible by num_generations, so the divisibility check let it through"),
    (["grpo.gradient_accumulation_steps=-1"], "grpo.gradient_accumulation_steps", "got -1", "negative"),
    (["eval.batch_size=0"], "eval.batch_size", "got 0", "ran SFT and GRPO, then range() arg 3 must not be zero"),
    ([IMPROVE, "improve.batch_size=0"], "improve.batch_size", "got 0", "improve's sampling batch"),
    ([IMPROVE, "+improve.sft.per_device_train_batch_size=0"], "improve.sft.per_device_train_batch_size", "got 0",
     "the retraining's batch"),
    ([IMPROVE, "sft.enabled=false", "sft.per_device_train_batch_size=0"], "sft.per_device_train_batch_size", "got 0",
     "improve retrains with the sft group's batch even when the SFT stage is off"),
    # eval.k against eval.num_samples
    (["eval.k=[1,5]"], "eval.k", "got 5", "pass@5 from 2 samples was silently left out"),
    (["eval.k=[0,1]"], "eval.k", "got 0", "reported a pass@0"),
    (["eval.num_samples=0"], "eval.k", "[1, 2]", "k=[1,2] with no samples: every pass@k silently missing"),
    (["eval.num_samples=-1"], "eval.num_samples", "got -1", "a negative sample count"),
    (["eval.erase_on_device=gpu"], "eval.erase_on_device", "got 'gpu'", "new key: a word where true/false/null go"),
    (["eval.k=[1,two]"], "eval.k", "got 'two'", "not an integer"),
    (["eval.extra_decodings={erase: {k: [4]}}"], "eval.extra_decodings.erase.k", "got 4",
     "an extra pass's own k must fit its samples too"),
    # temperatures where sampling happens (greedy accuracy never uses one)
    (["eval.temperature=-1"], "eval.temperature", "got -1", "was accepted"),
    (["eval.temperature=0"], "eval.temperature", "got 0",
     "sampling at 0 divides the logits by zero; greedy only is num_samples=0"),
    (["eval.extra_decodings={erase: {temperature: 0}}"], "eval.extra_decodings.erase.temperature", "got 0",
     "an extra pass samples at its own temperature"),
    (["grpo.temperature=0"], "grpo.temperature", "got 0", "GRPO samples every completion"),
    ([IMPROVE, "improve.temperature=-0.5"], "improve.temperature", "got -0.5", "improve samples every completion"),
    # model sizes (smoke: hidden 64, 2 heads, 2 key/value heads)
    (["model.hidden_size=65"], "model.hidden_size", "65 is not divisible",
     "65 / 2 heads: a library traceback naming no key"),
    (["model.num_attention_heads=3"], "model.hidden_size", "(3)",
     "64 / 3 heads: names both keys, leads with the size"),
    (["model.hidden_size=62"], "model.hidden_size", "31 dimensions",
     "31 dimensions per head: RoPE needs an even number"),
    (["model.num_attention_heads=4", "model.num_key_value_heads=3"], "model.num_attention_heads", "(3)",
     "4 heads cannot be grouped over 3 key/value heads"),
    (["model.num_attention_heads=0"], "model.num_attention_heads", "got 0", "would divide by zero"),
    (["model.num_hidden_layers=0"], "model.num_hidden_layers", "got 0", "a model with no layers"),
    (["model=hf", "model.path=/nowhere", "model.num_attention_heads=3"], "model.hidden_size", "(3)",
     "model=hf with experiment=smoke's sizes: sizes given are checked"),
    # other lengths and counts
    (["grpo.num_generations=1"], "grpo.num_generations", "got 1", "one completion per prompt has no advantage"),
    (["grpo.num_generations=0"], "grpo.num_generations", "got 0", "was a ZeroDivisionError in the divisibility check"),
    (["grpo.max_completion_length=0"], "grpo.max_completion_length", "got 0", "completions of no tokens"),
    (["grpo.beta=-0.1"], "grpo.beta", "got -0.1", "a negative KL penalty rewards drifting away"),
    (["grpo.n_prompts=0"], "grpo.n_prompts", "got 0", "0 silently meant every prompt"),
    # who writes GRPO's completions (train/grpo.py)
    (["grpo.generator=vllm"], "grpo.generator", "got 'vllm'", "an unknown generator: trl or project"),
    (["grpo.generator=project", "+grpo.top_p=0.9"], "grpo.top_p", "0.9",
     "the project's decoder samples at grpo.temperature only: top_p would be ignored, silently"),
    (["grpo.generator=project", "grpo.use_transformers_continuous_batching=true"],
     "grpo.use_transformers_continuous_batching", "True", "TRL's own generation switch, not the project's"),
    (["eval.max_new_tokens=0"], "eval.max_new_tokens", "got 0", "nothing generated, every answer wrong"),
    (["eval.n_problems=-1"], "eval.n_problems", "got -1", "records[:-1] silently dropped the last problem"),
    (["sft.max_length=0"], "sft.max_length", "got 0", "no room for any token"),
    (["sft.max_minutes=0"], "sft.max_minutes", "got 0", "0 silently meant no time limit"),
    (["sft.length_buckets=-1"], "sft.length_buckets", "got -1", "null turns bucketing off; negatives are nonsense"),
    # the run's length and warm-up (transformers: max_steps -1 hands the length to num_train_epochs)
    (["sft.max_steps=0"], "sft.max_steps", "got 0", "ran one step at learning rate 0, without a word"),
    (["sft.max_steps=-5"], "sft.max_steps", "got -5", "silently meant -1; a typo, most likely"),
    (["sft.max_steps=2.5"], "sft.max_steps", "got 2.5", "a step count is whole"),
    (["sft.max_steps=ten"], "sft.max_steps", "got 'ten'", "not a number"),
    (["grpo.max_steps=0"], "grpo.max_steps", "got 0", "after SFT had trained and saved"),
    (["sft.max_steps=-1", "sft.num_train_epochs=0"], "sft.num_train_epochs", "got 0",
     "epochs set the length when max_steps is -1: 0 trains nothing"),
    (["sft.num_train_epochs=-1"], "sft.num_train_epochs", "got -1", "negative, even where max_steps rules"),
    (["sft.num_train_epochs=one"], "sft.num_train_epochs", "got 'one'", "not a number"),
    (["+grpo.num_train_epochs=nan"], "grpo.num_train_epochs", "nan", "nan is no number of epochs"),
    (["sft.warmup_steps=-10"], "sft.warmup_steps", "got -10", "a ValueError from TrainingArguments naming no group"),
    (["sft.warmup_steps=2.5"], "sft.warmup_steps", "got 2.5", "above 1 it counts steps: int() dropped the half"),
    (["+grpo.warmup_steps=true"], "grpo.warmup_steps", "got True", "a bool is not a count"),
    ([IMPROVE, "improve.sft.max_steps=0"], "improve.sft.max_steps", "got 0", "the retraining's own length"),
    ([IMPROVE, "improve.sft.num_train_epochs=0"], "improve.sft.num_train_epochs", "got 0",
     "improve retrains for epochs (max_steps -1)"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if python -m train's run() gets as far as data, a model or training."""
    import train.data
    import train.grpo
    import train.model
    import train.sft

    def started(*a, **k):
        raise AssertionError("work started before the config was refused")
    for module, name in ((train.data, "dataset_dir"), (train.model, "build_model"),
                         (train.sft, "train"), (train.grpo, "train")):
        monkeypatch.setattr(module, name, started)


@pytest.mark.parametrize("overrides, key, shown, why", BAD, ids=[" ".join(row[0]) for row in BAD])
def test_bad_value_is_refused_before_any_work(tmp_path, no_work, overrides, key, shown, why):
    from train.__main__ import run

    c = compose("experiment=smoke", f"data.cache_dir={tmp_path / 'cache'}", *overrides)
    with pytest.raises(ConfigError) as err:
        run(c, tmp_path / "run")
    assert err.value.key == key and str(err.value).startswith(f"{key}: "), str(err.value)
    assert shown in str(err.value), str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_the_harness_sees_work_start(tmp_path, no_work):
    """Without a bad value, run() passes the checks and reaches the data: the fixture above
    would catch a check that ran too late."""
    from train.__main__ import run

    with pytest.raises(AssertionError, match="work started"):
        run(compose("experiment=smoke", f"data.cache_dir={tmp_path / 'cache'}"), tmp_path / "run")


def sweep_arms(experiment: str) -> list[list[str]]:
    """Each run of ``python -m train -m experiment=E`` as its list of overrides, expanded from
    the file's hydra.sweeper.params the way Hydra's basic sweeper does."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    text = (ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    params = ((yaml.safe_load(text).get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    axes = []
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        key = o.get_key_element()
        values = o.sweep_string_iterator() if o.is_sweep_override() else [o.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    return [[f"experiment={experiment}", *combo] for combo in itertools.product(*axes)]


GOOD = [args for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml")) for args in sweep_arms(p.stem)] + [
    [],                                                          # the defaults: the demo
    ["experiment=smoke", "improve.enabled=true"],                # improve's defaults
    ["experiment=smoke", "eval.num_samples=0", "eval.k=[]", "eval.temperature=0"],  # greedy only: no temperature
    ["experiment=smoke", "grpo.enabled=false", "grpo.learning_rate=-1"],            # a stage that does not run
    ["experiment=smoke", "improve.enabled=true", "sft.enabled=false", "sft.learning_rate=-1"],  # improve.sft's rate
    ["model=hf", "model.path=/nowhere", "tokenizer=checkpoint"],  # no sizes to check (the path is checked later)
    ["experiment=smoke", "model.num_key_value_heads=1"],         # grouped-query attention: 2 heads over 1
    ["experiment=smoke", "sft.max_steps=-1", "sft.num_train_epochs=0.5"],  # half an epoch, by epochs
    ["experiment=smoke", "sft.num_train_epochs=0"],              # epochs do not count while max_steps > 0
    ["experiment=smoke", "sft.warmup_steps=0.1", "+grpo.warmup_steps=3.0"],  # a share; a whole float
]


@pytest.mark.parametrize("overrides", GOOD, ids=[" ".join(a) or "defaults" for a in GOOD])
def test_every_shipped_config_and_sweep_arm_passes(overrides):
    from train.checks import check

    check(compose(*overrides))


def test_sweep_arms_are_expanded():
    """The table above covers every arm, not only each file's first."""
    assert len(sweep_arms("style_ablation_cpu")) == 9 and len(sweep_arms("smoke")) == 1


@pytest.mark.slow
@pytest.mark.parametrize("bad, key", [
    ("grpo.learning_rate=-0.001", "grpo.learning_rate"),  # trained and saved SFT before failing
    ("eval.batch_size=0", "eval.batch_size"),             # ran SFT and GRPO before failing
])
def test_cli_refuses_before_writing_anything(tmp_path, bad, key):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    r = subprocess.run([sys.executable, "-m", "train", "experiment=smoke", f"hydra.run.dir={run_dir}",
                        f"data.cache_dir={cache}", bad], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"error: {key}: " in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not cache.exists()                                           # no dataset generated
    assert {p.name for p in run_dir.iterdir()} <= {".hydra", "__main__.log"}  # only Hydra's own record
