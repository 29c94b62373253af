"""Tool-loop evaluation (train/toolloop.py), the loop rate (train.evaluate.is_loop) and
outcome markers (sft.outcome_marker), on scripted models and one real tiny model.

The scripted model is a one-layer Llama whose forward is replaced by a policy of the text
it is given (no cache: ``use_cache=False``, so every call sees the whole context), driven by
the real ``model.generate``. So the tests see what the model read: a program's output is
the sandbox's only if the model could not have written it (it would write 999).
"""

import json

import pytest
import torch

from solvers.trace import collapse

pytest.importorskip("transformers")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402

from solvers import TASKS  # noqa: E402
from train import toolloop  # noqa: E402
from train.evaluate import evaluate, is_loop  # noqa: E402
from train.tokenizer import FAILURE, SUCCESS, build_char_tokenizer  # noqa: E402

EOS = "<eos>"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer(["Q\n"])


class Scripted(LlamaForCausalLM):
    """``policy(prompt, completion) -> next token``; ``prompt`` is the text before the first
    newline. Records every (prompt, completion) it was called on."""

    def __init__(self, tokenizer, policy):
        super().__init__(LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16,
                                     num_hidden_layers=1, num_attention_heads=1, max_position_embeddings=4096,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                     bos_token_id=None))
        self.generation_config.use_cache = False
        self.tok, self.policy, self.seen = tokenizer, policy, []

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits = torch.full((*input_ids.shape, len(self.tok)), -1e4)
        for b in range(input_ids.shape[0]):
            ids = input_ids[b] if attention_mask is None else input_ids[b][attention_mask[b].bool()]
            prompt, _, completion = self.tok.decode(ids, skip_special_tokens=True).partition("\n")
            self.seen.append((prompt, completion))
            logits[b, -1, self.tok.convert_tokens_to_ids(self.policy(prompt, completion))] = 0.0
        return CausalLMOutputWithPast(logits=logits)


def next_char(target: str, written: str) -> str:
    """The next token of ``target`` after ``written``, or EOS when it is done (or off script)."""
    return target[len(written)] if target.startswith(written) and len(written) < len(target) else EOS


def programs_then_answer(n_programs: int):
    """Writes ``print(k * k)`` programs, k = 0, 1, ..., each followed by an output block of its
    own saying 999 if nobody inserts one, then boxes the number of the last output it read."""
    def policy(prompt, completion):
        k = completion.count("</output>\n")
        done, _, tail = completion.rpartition("</output>\n")
        if k < n_programs:
            return next_char(f"<program>\nprint({k} * {k})\n</program>\n<output>\n999\n</output>\n", tail)
        last = done.rsplit("<output>\n", 1)[-1].strip()
        return next_char(f"<boxed>{last}</boxed>\nAnswer: {last}", tail)
    return policy


def loop(model, tok, prompts, k=1, max_rounds=4, max_new_tokens=400, do_sample=False, batch_size=8):
    return toolloop.generate(model, tok, prompts, tool=TASKS["program"].TOOL, num_return_sequences=k, do_sample=do_sample, temperature=1.0,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, max_rounds=max_rounds, timeout=5)


def outputs_of(text: str) -> list[str]:
    from solvers.program import programs
    return [" ".join(out or []) for _, out in programs(collapse(text))]


# ----------------------------------------------------------------------------- tool loop

def test_the_inserted_output_is_what_the_sandbox_printed(tok):
    model = Scripted(tok, programs_then_answer(2))
    (text, tokens, rounds), = loop(model, tok, ["Q\n"])[0]
    # 0 * 0 and 1 * 1 as the sandbox printed them; the model would have written 999
    assert outputs_of(text) == ["0", "1"] and rounds == 2
    assert text.endswith("<boxed>1</boxed>\nAnswer: 1")
    assert "\n</program>\n<output>\n0\n</output>\n<program>" in text      # the training traces' layout
    # the model read the real output before it wrote its next line, and was never handed a 999
    assert any(c.endswith("<output>\n0\n</output>\n") for p, c in model.seen)
    assert not any("999" in c for p, c in model.seen)
    # generated tokens: the model's own characters and its EOS, not the inserted blocks
    inserted = 2 * len("\n<output>\n0\n</output>\n")
    assert tokens == len(text) - inserted + 1


@pytest.mark.parametrize("max_rounds, expected", [
    (4, ["0", "1", "4", "9"]),          # every program ran
    (2, ["0", "1", "999", "999"]),      # two rounds, then the model finishes with outputs of its own
    (0, ["999", "999", "999", "999"]),  # no rounds: plain generation
])
def test_the_round_cap_holds(tok, max_rounds, expected):
    model = Scripted(tok, programs_then_answer(4))
    (text, _, rounds), = loop(model, tok, ["Q\n"], max_rounds=max_rounds)[0]
    assert outputs_of(text) == expected and rounds == max_rounds
    assert text.endswith(f"Answer: {expected[-1]}")


def test_rows_in_a_batch_are_independent_and_the_budget_holds(tok):
    policies = {"A": programs_then_answer(1), "B": programs_then_answer(3),
                "C": lambda p, c: next_char("Answer: 5", c)}   # no program at all
    model = Scripted(tok, lambda prompt, completion: policies[prompt](prompt, completion))
    out = loop(model, tok, ["A\n", "B\n", "C\n"], k=2, do_sample=True, batch_size=4)
    assert [len(o) for o in out] == [2, 2, 2]
    (a, _, ra), (b, _, rb), (c, _, rc) = (o[0] for o in out)
    assert (outputs_of(a), ra) == (["0"], 1) and (outputs_of(b), rb) == (["0", "1", "4"], 3)
    assert (c, rc) == ("Answer: 5", 0)
    assert out[1][0] == out[1][1]                            # the policy is deterministic
    (short, tokens, _), = loop(model, tok, ["B\n"], max_new_tokens=60)[0]
    assert tokens == 60 and "Answer" not in short            # the budget counts only generated tokens


def test_tool_loop_config_is_checked():
    from solvers.config import ConfigError

    toolloop.check({"tool_loop": {"enabled": False, "max_rounds": -1}})  # off: not looked at
    with pytest.raises(ConfigError, match="eval.tool_loop.max_rounds"):
        toolloop.check({"tool_loop": {"enabled": True, "max_rounds": -1, "timeout": 5}})
    with pytest.raises(ConfigError, match="eval.tool_loop.enabled"):
        toolloop.check({"decoding": "erase", "tool_loop": {"enabled": True, "max_rounds": 2, "timeout": 5}})


PUZZLE = {"family": "multiples", "a": 3, "b": 5, "limit": 10}   # answer 23


def eval_config(**over):
    e = {"split": "test", "n_problems": None, "num_samples": 0, "k": [1], "temperature": 1.0,
         "max_new_tokens": 48, "batch_size": 8, "decoding": "visible", "outcome_marker": False,
         "tool_loop": {"enabled": True, "max_rounds": 4, "timeout": 5}}
    e.update(over)
    return e


def test_evaluate_runs_the_tool_loop_for_program_records(tok, tmp_path):
    def policy(prompt, completion):
        done, _, tail = completion.rpartition("</output>\n")
        if not done:
            return next_char("<program>\nprint(sum(n for n in range(10) if n % 3 == 0 or n % 5 == 0))\n"
                             "</program>\n<output>\n999\n</output>\n", tail)
        last = done.rsplit("<output>\n", 1)[-1].strip()
        return next_char(f"<boxed>{last}</boxed>\nAnswer: {last}", tail)

    records = [{"id": "p0", "task": "program", "puzzle": PUZZLE, "Question": "Q"}]
    metrics = evaluate(Scripted(tok, policy), tok, records, eval_config(max_new_tokens=200), tmp_path)
    row, = [json.loads(line) for line in open(tmp_path / "samples.jsonl")]
    assert row["tool_rounds"] == 1 and row["answer"] == "23" and row["correct"]
    assert "<output>\n23\n</output>" in row["completion"]
    assert metrics["accuracy"] == 1.0 and metrics["tool_loop"]["mean_rounds"] == 1.0
    # the same model without the loop believes its own output
    metrics = evaluate(Scripted(tok, policy), tok, records,
                       eval_config(max_new_tokens=200, tool_loop={"enabled": False}), tmp_path)
    row, = [json.loads(line) for line in open(tmp_path / "samples.jsonl")]
    assert row["answer"] == "999" and "tool_rounds" not in row and "tool_loop" not in metrics


def test_a_real_tiny_model_through_the_tool_loop(tok, tmp_path):
    """A randomly initialised Llama and the real generate path: it writes noise, the loop must
    still return every row within budget and evaluation must record it."""
    from train.model import tiny_config

    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_config(tiny_config(
        {"arch": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
         "num_attention_heads": 2, "max_position_embeddings": 512}, tok))
    records = [{"id": f"p{i}", "task": "program", "puzzle": PUZZLE, "Question": f"Question {i}?"} for i in range(3)]
    metrics = evaluate(model, tok, records, eval_config(num_samples=2, k=[1, 2]), tmp_path)
    rows = [json.loads(line) for line in open(tmp_path / "samples.jsonl")]
    assert len(rows) == 3 * 3 and all(0 < r["tokens"] <= 48 and "tool_rounds" in r for r in rows)
    assert {"loop_rate", "no_answer_rate", "pass@2", "tool_loop"} <= set(metrics)


# ----------------------------------------------------------------------------- loop rate

@pytest.mark.parametrize("text, hit_limit, loops", [
    ("x" * 100, True, True),                                   # one character forever (period 1 -> 8)
    ("ab" * 50, True, True),                                   # a short span: its multiple of 8 repeats
    ("Answer: 3\n" + "5 + 5 = 10\n" * 3, True, True),          # 3 copies of 11 characters cover the last quarter
    ("Answer: 3\n" + "5 + 5 = 10\n" * 2, True, False),         # only 2 copies
    ("x" * 100, False, False),                                 # it stopped on its own: never a loop
    ("abcdefg" * 10, True, True),                              # 7 characters: 14 is a period >= 8 too
    ("q" * 300 + "abc" * 3, True, False),                      # the very end does not repeat
    ("<program>\nprint(1)\n</program>\n" * 4, True, True),     # a whole program repeated (30 chars, 4 times)
    ("intro " * 3 + "".join(f"step {i}\n" for i in range(40)), True, False),  # counting up is not a loop
    ("", True, False),                                         # nothing written
    ("abcdefgh" * 3 + "z" * 200 + "abcdefgh" * 3, True, False),  # 3 copies cover 24 of the last 62 characters
])
def test_is_loop_table(text, hit_limit, loops):
    assert is_loop(text, hit_limit) == loops


def test_is_loop_mid_span_and_long_periods():
    span = "3 + 4 = 7. Left: 7, 9.\n"                      # 23 characters
    assert is_loop("intro\n" + span * 5 + span[:9], True)    # cut mid-span at the limit
    program = "<program>\n" + "\n".join(f"x{i} = {i}" for i in range(20)) + "\n</program>\n"  # 189 characters
    assert is_loop("a" * 50 + program * 3, True)             # a long span needs only cover 3 copies
    assert not is_loop("a" * 2000 + program * 3, True)       # ... unless that is less than a quarter


# ----------------------------------------------------------------------------- outcome markers

def test_markers_are_single_ordinary_tokens(tok):
    for marker in (SUCCESS, FAILURE):
        ids = tok(f"Q\n{marker}Answer: 1", add_special_tokens=False)["input_ids"]
        assert len(ids) == len("Q\nAnswer: 1") + 1
        assert tok.decode(ids, skip_special_tokens=True) == f"Q\n{marker}Answer: 1"


def test_outcome_examples_mark_the_prompt_and_fail_only_at_the_answer(tok):
    from solvers import verifier
    from train.sft import examples

    record = {"id": "c1", "task": "countdown", "puzzle": {"numbers": [2, 3, 4], "target": 20}, "Question": "Q",
              "Reasoning": "2 * 3 = 6\n\b\b\b\b\b\b\b\b\b\b2 + 3 = 5\n5 * 4 = 20\nAnswer: (2 + 3) * 4"}
    rows, dropped = examples([record], tok, mask_erased=False, max_length=None, outcome_marker=True)
    assert dropped == 0 and len(rows) == 2
    texts = [tok.decode(r["input_ids"], skip_special_tokens=True) for r in rows]
    assert texts[0] == f"Q\n{SUCCESS}" + record["Reasoning"]
    assert texts[1].startswith(f"Q\n{FAILURE}2 * 3 = 6\n\b")        # the same work, backspaces and all
    wrong = collapse(texts[1][len(f"Q\n{FAILURE}"):]).rsplit("Answer: ", 1)[1]
    assert wrong != "(2 + 3) * 4" and not verifier("countdown")(record["puzzle"], wrong)
    for r in rows:   # the marker ends the prompt: never in the loss
        marker_at = len(tok("Q\n", add_special_tokens=False)["input_ids"])
        assert r["completion_mask"][:marker_at + 1] == [0] * (marker_at + 1) and r["completion_mask"][-1] == 1
    plain, _ = examples([record], tok, mask_erased=False, max_length=None)
    assert len(plain) == 1 and tok.decode(plain[0]["input_ids"], skip_special_tokens=True) == "Q\n" + record["Reasoning"]


def test_evaluation_conditions_on_success_and_never_judges_a_marker(tok, tmp_path):
    # it answers only after a prompt that ends with <success>, and writes a marker after its answer
    model = Scripted(tok, lambda prompt, completion: next_char(
        f"Answer: 23{SUCCESS}", completion[len(SUCCESS):] if completion.startswith(SUCCESS) else "off script"))
    records = [{"id": "p0", "task": "program", "puzzle": PUZZLE, "Question": "Q"}]
    metrics = evaluate(model, tok, records, eval_config(outcome_marker=True, tool_loop={"enabled": False}), tmp_path)
    assert all(c.startswith(SUCCESS) for _, c in model.seen)   # the prompt ended with <success>
    row, = [json.loads(line) for line in open(tmp_path / "samples.jsonl")]
    assert row["completion"].endswith(SUCCESS) and row["answer"] == "23" and row["correct"]
    assert metrics["outcome_marker"] is True
