"""The trainer: configs, tokenizer, loss masks, rewards, pass@k, bad input, and a smoke run."""

import json
import subprocess
import sys
from itertools import combinations
from math import comb
from pathlib import Path

import pytest

from solvers.trace import BACKSPACE, collapse
from tests.conftest import ROOT

pytest.importorskip("trl")

GROUP_OPTIONS = {group: sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
                 for group in ("data", "model", "tokenizer", "peft", "quant", "hardware", "sft", "grpo", "eval")}
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def compose(*overrides) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides))
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("hydra", None)
    return c


@pytest.fixture
def pretend_gpu(monkeypatch):
    """TrainingArguments refuses bf16 where no GPU supports it; building the GPU configs on
    this CPU machine needs it to believe one does (nothing is run on it)."""
    import transformers.training_args as ta
    monkeypatch.setattr(ta, "is_torch_bf16_gpu_available", lambda *a, **k: True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Llama checkpoint with its char tokenizer, as a user's local model directory."""
    from transformers import AutoModelForCausalLM

    from train.model import tiny_config
    from train.tokenizer import build_char_tokenizer

    path = tmp_path_factory.mktemp("ckpt")
    tok = build_char_tokenizer(["0123456789+-*/= \n"])
    m = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "max_position_embeddings": 256}
    AutoModelForCausalLM.from_config(tiny_config(m, tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_every_group_option_composes_and_builds_trl_configs(tmp_path, checkpoint, pretend_gpu, group, option):
    from train.model import lora_config, quantization_config
    from train.trl_configs import grpo_config, sft_config

    overrides = [f"{group}={option}"]
    if option == "hf":
        overrides.append(f"model.path={checkpoint}")
    c = compose(*overrides)
    sft = sft_config(c, tmp_path / "sft")
    grpo = grpo_config(c, tmp_path / "grpo")
    assert sft.completion_only_loss is True
    assert grpo.per_device_train_batch_size % grpo.num_generations == 0
    lora_config(c["peft"])
    quantization_config(c["quant"])
    if c["hardware"]["use_cpu"]:
        assert not sft.bf16 and not grpo.bf16


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds_trl_configs(tmp_path, pretend_gpu, experiment):
    from train.trl_configs import grpo_config, sft_config

    c = compose(f"experiment={experiment}")
    sft_config(c, tmp_path / "sft")
    grpo_config(c, tmp_path / "grpo")
    text = (ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_\n# python -m train")  # says how to run it


def test_hf_lora_4bit_gpu_builds_its_configs_on_cpu(tmp_path, checkpoint, pretend_gpu):
    from transformers import BitsAndBytesConfig

    from train.model import build_model, lora_config, quantization_config
    from train.tokenizer import load_tokenizer
    from train.trl_configs import grpo_config, sft_config

    c = compose("model=hf", f"model.path={checkpoint}", "peft=lora", "quant=4bit", "hardware=gpu",
                "tokenizer=checkpoint")
    q = quantization_config(c["quant"])
    assert isinstance(q, BitsAndBytesConfig) and q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    lora = lora_config(c["peft"])
    assert lora.r == 16 and "q_proj" in lora.target_modules
    assert sft_config(c, tmp_path).bf16 and not grpo_config(c, tmp_path).use_cpu
    # the same checkpoint without quantization loads on a CPU, with its own tokenizer
    c = compose("model=hf", f"model.path={checkpoint}", "tokenizer=checkpoint")
    tok = load_tokenizer(checkpoint)
    model = build_model(c, tok)
    assert model.config.vocab_size == len(tok)


# ----------------------------------------------------------------------------- tokenizer and masks

def test_char_tokenizer_keeps_backspaces_through_save_and_load(tmp_path):
    from train.tokenizer import build_char_tokenizer, check_ordinary, load_tokenizer

    tok = build_char_tokenizer(["Use the numbers 3, 5", "2 + 2 = 5\n\b\b\b\b\b\b"])
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    text = "7 * 3 = 21\n\b\b\b\b\b\b\b\b\b\b\b<backtrack>Answer: 7 * 3"
    ids = again(text, add_special_tokens=False)["input_ids"]
    assert again.decode(ids, skip_special_tokens=True) == text
    assert again.convert_tokens_to_ids("\b") not in again.all_special_ids
    check_ordinary(again)


def test_mask_erased_leaves_dead_ends_out_of_the_loss():
    from train.data import sft_example
    from train.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer([])
    record = {"Question": "Q?", "Reasoning": "ab\n" + BACKSPACE * 3 + "cd\nAnswer: 1"}
    masked = sft_example(record, tok, mask_erased=True)
    plain = sft_example(record, tok, mask_erased=False)
    assert masked["input_ids"] == plain["input_ids"]
    prompt = 3  # "Q?\n"
    completion = masked["completion_mask"][prompt:]
    assert completion[:3] == [0, 0, 0]          # "ab\n" is erased later: not learned
    assert completion[3:6] == [1, 1, 1]         # the backspaces are learned
    assert all(completion[6:])                  # the rest and EOS are learned
    assert plain["completion_mask"][prompt:] == [1] * (len(record["Reasoning"]) + 1)
    assert masked["completion_mask"][:prompt] == [0] * prompt and masked["input_ids"][-1] == tok.eos_token_id


# ----------------------------------------------------------------------------- rewards and pass@k

P = '{"numbers": [3, 5, 7], "target": 22}'


@pytest.mark.parametrize("completion, correct, fmt", [
    ("3 * 5 = 15\n15 + 7 = 22\nAnswer: 3 * 5 + 7", 1.0, 1.0),       # a plain solution
    ("3 + 5 = 8\n" + BACKSPACE * 10 + "3 * 5 = 15\n15 + 7 = 22\nAnswer: 3 * 5 + 7", 1.0, 1.0),  # erased dead end
    ("Answer: 3 + 5 + 7\n", 0.0, 0.0),                              # wrong, and not last line
    ("Answer: 3 * 5 + 7" + BACKSPACE * 17 + "Answer: 5 * 3 + 7", 1.0, 1.0),  # rewritten answer counts
    ("Answer: 3 * 5 + 7" + BACKSPACE * 3, 0.0, 1.0),                # "Answer: 3 * 5": wrong, well formed
    (BACKSPACE + "Answer: 3 * 5 + 7", 0.0, 0.0),                    # erases nothing: malformed
    ("3 * 5 = 15\n<backtrack>Answer: 3 * 5 + 7", 1.0, 1.0),        # marker erases the step line
    ("no answer at all", 0.0, 0.0),
    ("Answer: 3 * 5 + 7 + 0", 0.0, 1.0),                           # 0 is not one of the numbers
])
def test_reward_table(completion, correct, fmt):
    from train.rewards import correctness, format_reward

    assert correctness([completion], puzzle=[P], task=["countdown"]) == [correct]
    assert format_reward([completion]) == [fmt]


@pytest.mark.parametrize("n, c, k, expected", [
    (1, 1, 1, 1.0), (1, 0, 1, 0.0),
    (4, 2, 1, 0.5),            # c/n
    (4, 2, 2, 1 - 1 / 6),      # 1 - C(2,2)/C(4,2)
    (5, 1, 3, 1 - 4 / 10),     # 1 - C(4,3)/C(5,3)
    (8, 0, 8, 0.0), (8, 1, 8, 1.0),
])
def test_pass_at_k_against_hand_computed_values(n, c, k, expected):
    from train.evaluate import pass_at_k

    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_equals_the_fraction_of_k_subsets_with_a_correct_sample():
    from train.evaluate import pass_at_k

    for n in range(1, 7):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                hits = sum(any(s) for s in combinations(samples, k))
                assert pass_at_k(n, c, k) == pytest.approx(hits / comb(n, k))


# ----------------------------------------------------------------------------- bad input

def run_train(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("args, message", [
    (["data.path=/nonexistent/dataset"], "data.path: no such directory"),
    (["grpo.per_device_train_batch_size=6", "grpo.num_generations=4"],
     "grpo.per_device_train_batch_size: per_device_train_batch_size x gradient_accumulation_steps (6) must be divisible"),
    (["sft.max_length=20"], "sft.max_length: 20 tokens leaves no room for a completion"),
    (["+sft.no_such_field=1"], "sft.no_such_field: not a field of TRL's SFTConfig"),
    (["grpo.rewards=[correctness,elegance]"], "grpo.rewards: unknown reward 'elegance'"),
    (["eval.decoding=beam"], "eval.decoding: must be one of visible, erase, self_backtrack"),
    (["eval.extra_decodings={erase: {beam_width: 2}}"], "eval.extra_decodings.erase.beam_width: not a key"),
    (["eval.extra_decodings={visible: {}}"], "eval.extra_decodings.visible: is already eval.decoding"),
    (["eval.extra_decodings={sideways: {}}"], "eval.extra_decodings.sideways: not a decoding"),
    (["eval.extra_decodings={self_backtrack: {self_backtrack: {score: best}}}"], "eval.self_backtrack.score"),
])
def test_bad_input_is_refused_before_training(tmp_path, args, message):
    r = run_train("experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr
    assert not (tmp_path / "run" / "sft").exists()   # nothing was trained


def test_empty_dataset_dir_and_checkpoint_without_tokenizer(tmp_path, checkpoint):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    r = run_train("experiment=smoke", f"data.path={empty}", f"hydra.run.dir={tmp_path / 'a'}")
    assert r.returncode == 2 and "holds no records" in r.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in Path(checkpoint).iterdir():
        if not f.name.startswith("tokenizer"):
            (bare / f.name).write_bytes(f.read_bytes())
    r = run_train("experiment=smoke", "model=hf", f"model.path={bare}", "tokenizer=checkpoint",
                  f"hydra.run.dir={tmp_path / 'b'}")
    assert r.returncode == 2 and "has no tokenizer" in r.stderr


# ----------------------------------------------------------------------------- end to end

def test_smoke_run_writes_metrics_and_samples_that_rejudge(tmp_path):
    from train.rejudge import rejudge

    run_dir = tmp_path / "run"
    r = run_train("experiment=smoke", f"hydra.run.dir={run_dir}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == str(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "pass@1", "pass@2", "mean_completion_tokens", "backspace_use", "malformed_rate",
                "no_answer_rate", "loop_rate", "sft_steps", "grpo_steps"):
        assert key in metrics
    assert metrics["grpo_reward_last"] is not None          # rewards were computed during GRPO
    samples = [json.loads(line) for line in open(run_dir / "samples.jsonl")]
    assert len(samples) == 8 * (1 + 2)                      # 8 problems, greedy + 2 samples each
    for s in samples:
        assert {"puzzle", "completion", "collapsed", "answer", "correct", "mode"} <= set(s)
        if not s["malformed"]:   # outcome markers (ordinary tokens an untrained model may write) never count
            assert s["collapsed"] == collapse(s["completion"].replace("<success>", "").replace("<failure>", ""))
    assert rejudge(run_dir)["disagreements"] == 0
    assert rejudge(run_dir)["loop_rate"] == metrics["loop_rate"]
    for stage in ("sft", "grpo"):
        assert (run_dir / stage / "tokenizer.json").exists() and (run_dir / stage / "config.json").exists()
    # eval alone, from the GRPO checkpoint, with two more decodings of the same checkpoint
    again = tmp_path / "eval"
    r = run_train("experiment=smoke", "sft.enabled=false", "grpo.enabled=false", f"init_from={run_dir / 'grpo'}",
                  f"hydra.run.dir={again}", f"data.cache_dir={tmp_path / 'cache'}",
                  "eval.extra_decodings={erase: {}, self_backtrack: {num_samples: 0, self_backtrack: {n: 2, b: 1}}}")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["n_problems"] == 8 and metrics["decoding"] == "visible"
    assert list(metrics["decodings"]) == ["erase", "self_backtrack"]
    erase, sb = metrics["decodings"]["erase"], metrics["decodings"]["self_backtrack"]
    assert erase["decoding"] == "erase" and "pass@2" in erase and "pass@1" not in sb
    assert sb["self_backtrack"] == {"n": 2, "b": 1, "score": "logprob"}   # the override merged into the default
    # a self_backtrack answer costs every sample of its search: at least n = 2 completions' worth
    assert sb["mean_generated_tokens"] >= sb["mean_completion_tokens"]
    assert erase["mean_generated_tokens"] == erase["mean_completion_tokens"]
    for mode, n_rows in (("erase", 8 * 3), ("self_backtrack", 8)):
        rows = [json.loads(line) for line in open(again / f"samples.{mode}.jsonl")]
        assert len(rows) == n_rows
        assert rejudge(again, mode)["disagreements"] == 0
    r = subprocess.run([sys.executable, "-m", "train.rejudge", str(again)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("re-judged greedy accuracy") == 3, r.stdout + r.stderr


def test_multirun_leaves_one_run_directory_per_combination(tmp_path):
    r = run_train("-m", "experiment=smoke", "data.style=backspace,direct", "grpo.enabled=false",
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == 2
    assert {json.loads(p.read_text())["style"] for p in runs} == {"backspace", "direct"}


def test_every_task_trains_end_to_end(tmp_path):
    """python -m train experiment=smoke data.task=T for every task but Countdown (the runs
    above), shrunk further: the path must run, not learn."""
    from solvers import TASKS

    # llm_search needs an LLM proposer (tests/test_llm_search.py) and program runs every
    # program in the sandbox (its own smoke run is in tests/test_program.py)
    others = sorted(n for n in set(TASKS) - {"countdown", "program"} if not getattr(TASKS[n], "PROPOSES", False))
    r = run_train("-m", "experiment=smoke", f"data.task={','.join(others)}", "data.n=60", "data.n_test=4",
                  "sft.max_steps=2", "grpo.max_steps=1", "eval.n_problems=2", "eval.max_new_tokens=32",
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == len(others)
    for path in runs:
        samples = [json.loads(line) for line in open(path.parent / "samples.jsonl")]
        assert {s["task"] for s in samples} <= set(others) and len({s["task"] for s in samples}) == 1
        assert json.loads(path.read_text())["grpo_steps"] == 1


def test_a_mixed_human_and_synthetic_dataset_trains(tmp_path):
    """python -m train experiment=smoke data.human=DIR: the shipped example traces mixed in,
    through SFT and GRPO (whose rewards check a human trace against its known Answer)."""
    run_dir = tmp_path / "run"
    r = run_train("experiment=smoke", "data.human=data/human", "data.human_ratio=0.25", "data.n=60",
                  "sft.max_steps=2", "grpo.max_steps=1", "eval.n_problems=2", "eval.max_new_tokens=32",
                  f"hydra.run.dir={run_dir}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    data_dir = next((tmp_path / "cache").iterdir())
    man = json.loads((data_dir / "manifest.json").read_text())
    assert man["human"]["rows"] == 20 and man["counts"]["train"] == 80
    assert json.loads((run_dir / "metrics.json").read_text())["grpo_steps"] == 1


def test_rejudge_falls_back_to_the_project_verifier_for_tasks_without_its_own_checker(tmp_path):
    from train.rejudge import rejudge

    puzzle = {"kind": "division", "dividend": 7482, "divisor": 29}
    rows = [{"mode": "greedy", "task": "arithmetic", "puzzle": puzzle, "completion": c, "correct": ok, "tokens": 5}
            for c, ok in (("74 / 29\nAnswer: 259\b8", True), ("Answer: 257", False))]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = rejudge(tmp_path)
    assert result == {"problems": 2, "accuracy": 0.5, "disagreements": 0, "independent": 0}
