"""grpo.generator=project: the project's visible decoder behind TRL's rollout_func hook.

The model here is scripted: a random tiny Llama whose next-token logits get +40 on one token
chosen by the token just read (a table, ``script``), so that sampling at temperature 1 is all
but deterministic (the other ~100 tokens share e^-40 of the mass). Both generators then sample
the same tokens, and what TRL builds from them for the loss must be equal, tensor for tensor.
"""

import copy
import inspect
import json

import pytest

from solvers.trace import BACKSPACE, BACKTRACK_TOKEN
from tests.test_train import compose, run_train

pytest.importorskip("trl")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

R1_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}<|User|>{{ m['content'] }}{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}")


def scripted_model(tok, script: dict[str, str], end: str = "<eos>"):
    """A tiny random Llama that writes ``script[last token]`` next, and ``end`` after any
    token the script does not name."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    ids = tok.convert_tokens_to_ids
    table = torch.zeros(len(tok), len(tok))
    table[:, ids(end)] = 40.0
    for token, after in script.items():
        table[ids(token)] = 0.0
        table[ids(token), ids(after)] = 40.0

    def bias(module, args, kwargs, output):
        if getattr(output, "logits", None) is None:  # TRL's loss (a fused LM head: log-probabilities
            return output                            # only) sees the unscripted model; generation is scripted
        read = kwargs["input_ids"][:, -output.logits.shape[1]:]  # TRL may keep only the completion's logits
        output.logits = output.logits + table.to(output.logits.device)[read]
        return output

    model.register_forward_hook(bias, with_kwargs=True)
    return model.train()


def grpo_args(tmp_path, **over):
    from trl import GRPOConfig

    kw = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
              per_device_train_batch_size=10, num_generations=2, max_completion_length=6, temperature=1.0,
              beta=0.0, max_steps=1, logging_steps=1, save_strategy="no", seed=0, dataloader_num_workers=0)
    kw.update(over)
    return GRPOConfig(**kw)


def test_rollout_func_is_the_hook_trl_offers():
    """The hook the project path hangs on: if TRL renames or drops it, this fails first."""
    from trl import GRPOTrainer

    params = inspect.signature(GRPOTrainer.__init__).parameters
    assert "rollout_func" in params
    assert callable(getattr(GRPOTrainer, "_generate_and_score_completions", None))  # what the next test compares


def test_project_and_trl_generation_hand_the_loss_the_same_batch(tmp_path):
    """Same prompts, same sampled tokens: every tensor TRL builds for the loss (prompt ids and
    mask, completion ids and mask, advantages, token counts), the completions the reward
    functions read (special tokens stripped, U+0008 and <backtrack> kept) and the logged
    completion-length metrics are equal whichever generator wrote the tokens. The rows cover
    each way a completion ends: EOS after a few tokens, EOS at once, a second EOS id from the
    model's generation config ('!'), and no EOS before max_completion_length (truncated)."""
    import torch
    from datasets import Dataset

    from train.grpo import build_trainer
    from train.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer([])
    script = {"a": "b", "b": "c", "c": "d",                   # "bcd<eos>"
              "1": BACKSPACE, BACKSPACE: "2", "2": "!",       # "\b2!": ends on the second EOS id
              "x": "y", "y": "x",                              # loops: cut at max_completion_length
              "3": BACKTRACK_TOKEN, BACKTRACK_TOKEN: "4"}      # "<backtrack>4<eos>"
    model = scripted_model(tok, script)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("!")]
    prompts = [f"Use 3, 5 to make {e}" for e in "a1x3z"]      # "z": EOS at once
    rows = [{"prompt": p, "puzzle": "{}", "task": "countdown"} for p in prompts for _ in range(2)]
    seen = {}

    def reward(completions, completion_ids, **kwargs):
        seen.setdefault(len(seen), (list(completions), [list(c) for c in completion_ids]))
        return [float(len(c)) for c in completions]            # rows differ: advantages are not all zero

    out, metrics = {}, {}
    for generator in ("trl", "project"):
        trainer = build_trainer(copy.deepcopy(model), tok, Dataset.from_list(rows), [reward],
                                grpo_args(tmp_path / generator), generator=generator)
        assert (trainer.rollout_func is not None) == (generator == "project")
        torch.manual_seed(1)
        out[generator] = trainer._generate_and_score_completions(copy.deepcopy(rows))
        metrics[generator] = {k: v for k, v in trainer._metrics["train"].items() if k.startswith("completions/")}

    trl, project = out["trl"], out["project"]
    assert set(trl) == set(project) and "sampling_per_token_logps" not in project   # logprobs: None, as TRL's
    for key in trl:
        a, b = trl[key], project[key]
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
        else:
            assert a == b, key
    assert metrics["trl"] == metrics["project"]
    assert seen[0] == seen[1]                                  # the reward functions read the same completions
    texts = seen[1][0]
    assert texts[::2] == ["bcd", f"{BACKSPACE}2!", "yxyxyx", f"{BACKTRACK_TOKEN}4", ""]
    ids, mask = project["completion_ids"], project["completion_mask"]
    assert mask.sum(1).tolist() == [4, 4, 3, 3, 6, 6, 3, 3, 1, 1]   # through the EOS; the loop is cut at 6
    assert ids[2, 2].item() == tok.convert_tokens_to_ids("!") and ids[8, 0].item() == tok.eos_token_id


@pytest.mark.parametrize("fmt", ["plain", "chat", "r1"])
def test_grpo_with_the_project_generator_trains_in_every_format(tmp_path, monkeypatch, fmt):
    """train.grpo.train with grpo.generator=project, one step: the prompts data.format builds
    reach the decoder, the completions reach the reward (the real correctness reward, through a
    recorder) and the update runs. The scripted model answers "9\\bAnswer: 2+3" after the
    prompt's last character (a newline in all three formats): right in plain and chat, wrong in
    r1, where the answer must follow </think>."""
    import train.grpo
    from train.data import prompt_of
    from train.rewards import correctness
    from train.tokenizer import CHATML_TEMPLATE, build_char_tokenizer
    from train.trl_configs import grpo_config

    tok = build_char_tokenizer([])
    tok.chat_template = {"plain": None, "chat": CHATML_TEMPLATE, "r1": R1_TEMPLATE}[fmt]
    answer = f"9{BACKSPACE}Answer: 2+3"
    chain = ["\n", *answer]
    model = scripted_model(tok, dict(zip(chain, chain[1:])))
    records = [{"Question": f"Use 2, 3 to make 5. ({i})", "task": "countdown",
                "puzzle": {"numbers": [2, 3], "target": 5}} for i in range(4)]
    calls = []

    def recorder(completions, prompts, **kwargs):
        scores = correctness(completions, **kwargs)
        calls.append((list(prompts), list(completions), scores))
        return scores
    monkeypatch.setitem(train.grpo.REWARDS, "correctness", recorder)

    c = compose("experiment=smoke", "hardware=cpu", f"data.format={fmt}", "grpo.generator=project",
                "grpo.max_steps=1", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
                f"grpo.max_completion_length={len(answer) + 3}", "grpo.rewards=[correctness]",
                "grpo.reward_weights=[1.0]")
    args = grpo_config(c, tmp_path / "grpo")
    _, metrics = train.grpo.train(model, tok, records, c, args, tmp_path / "grpo")

    assert metrics["grpo_generator"] == "project" and metrics["grpo_steps"] == 1
    prompts, completions, scores = calls[0]
    assert set(prompts) <= {prompt_of(r["Question"], tok, fmt) for r in records} and len(prompts) == 4
    assert completions == [answer] * 4                         # EOS stripped, the backspace kept
    expected = 0.0 if fmt == "r1" else 1.0
    assert scores == [expected] * 4 and metrics["grpo_reward_last"] == expected
    assert (tmp_path / "grpo" / "config.json").exists()


@pytest.mark.slow
def test_the_project_generator_runs_from_the_command_line(tmp_path):
    """python -m train experiment=smoke grpo.generator=project: the key reaches the trainer
    through Hydra, and rewards are computed on every logged step (about 20 s: the smoke
    dataset is generated first; the in-process run above is the fast check)."""
    run = tmp_path / "run"
    r = run_train("experiment=smoke", "grpo.generator=project", "sft.max_steps=2", "eval.enabled=false",
                  f"hydra.run.dir={run}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["grpo_generator"] == "project" and m["grpo_steps"] == 2
    assert m["grpo_reward_first"] is not None and m["grpo_reward_last"] is not None
    assert m["grpo_completions_per_second"] > 0


@pytest.mark.parametrize("over, key", [
    ({"generator": "vllm"}, "grpo.generator"),
    ({"generator": "project", "top_p": 0.9}, "grpo.top_p"),
    ({"generator": "project", "use_transformers_continuous_batching": True},
     "grpo.use_transformers_continuous_batching"),
])
def test_build_trainer_and_check_refuse_what_the_project_path_cannot_do(tmp_path, over, key):
    from solvers.config import ConfigError
    from train.grpo import build_trainer, check_generator

    with pytest.raises(ConfigError) as e:
        check_generator(over)
    assert e.value.key == key
    if key == "grpo.generator":   # a caller that skips the config checks is refused too
        with pytest.raises(ConfigError, match="grpo.generator: must be one of trl, project"):
            build_trainer(None, None, None, [], None, generator=over["generator"])
    check_generator({"generator": "trl", "top_p": 0.9})        # TRL's own path does these itself
    check_generator({"generator": "project", "top_p": 1.0, "top_k": 0, "min_p": None})   # "off" is fine


def test_grpo_bench_measures_each_generator_in_one_table(tmp_path, capsys):
    """benchmarks.grpo_bench, shrunk: a row per generator, with generation timed apart from the
    step (TRL's continuous batching is left out here: a 15 s warm-up per step on this CPU)."""
    from benchmarks import grpo_bench

    rows = grpo_bench.main(["--steps", "2", "--prompts", "1", "--num-generations", "4", "--max-completion-length",
                            "16", "--generators", "trl,project", "--json", str(tmp_path / "rows.json")])
    assert [r["generator"] for r in rows] == ["trl", "project"]
    for r in rows:
        assert r["steps"] == 2 and r["timed"] == 1                          # the first step is the warm-up
        assert 1 <= r["mean_length"] <= 16 and r["tokens_per_s"] > 0
        assert 0 < r["generation_s_per_step"] < r["step_s"]                 # generation is part of the step
    out = capsys.readouterr().out
    assert "| project | 2 (1) |" in out and "x tokens/s |" in out
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
