"""task=program: families against brute force, traces whose programs really ran, visible fixes
of buggy programs, erased lines, the validator's re-runs, the rewards, and a smoke training run."""

import dataclasses
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from generate import paraphrase, validate
from solvers import program as P
from solvers.config import ConfigError
from solvers.trace import BACKSPACE, STYLES, Backtrack, Step, collapse, render
from train.rewards import REWARDS, judge

ROOT = Path(__file__).resolve().parents[1]


def brute(puzzle):
    """Each family's answer the slow, obvious way (different from the reference solutions)."""
    f = puzzle["family"]
    if f == "multiples":
        return sum(n for n in range(puzzle["limit"]) if n % puzzle["a"] == 0 or n % puzzle["b"] == 0)
    if f == "prime":
        n = puzzle["n"]
        return max(p for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, math.isqrt(p) + 1)))
    if f == "digits":
        value, total = puzzle["base"] ** puzzle["exp"], 0
        while value:
            value, d = divmod(value, 10)
            total += d
        return total
    if f == "binomial":
        return sum(math.comb(n, r) > puzzle["threshold"] for n in range(1, puzzle["rows"] + 1) for r in range(n + 1))
    if f == "lattice":  # walk every path on a small grid
        def walk(x, y):
            return 1 if (x, y) == (puzzle["width"], puzzle["height"]) else (
                (walk(x + 1, y) if x < puzzle["width"] else 0) + (walk(x, y + 1) if y < puzzle["height"] else 0))
        return walk(0, 0)


def test_reference_answers_match_brute_force():
    config = P.Config(limit_max=300, factor_max=3000, power_max=60, rows_max=30, grid_max=6)
    rng = random.Random(0)
    seen = set()
    for _ in range(400):
        puzzle = P.sample(config, rng)
        seen.add(puzzle["family"])
        assert P.reference_answer(puzzle) == brute(puzzle), puzzle
    assert seen == set(P.FAMILIES)
    # the classics
    assert P.reference_answer({"family": "multiples", "a": 3, "b": 5, "limit": 1000}) == 233168
    assert P.reference_answer({"family": "prime", "n": 13195}) == 29
    assert P.reference_answer({"family": "digits", "base": 2, "exp": 15}) == 26
    assert P.reference_answer({"family": "binomial", "rows": 100, "threshold": 10**6}) == 4075
    assert P.reference_answer({"family": "lattice", "width": 20, "height": 20}) == 137846528820


P23 = {"family": "multiples", "a": 3, "b": 5, "limit": 10}


@pytest.mark.parametrize("answer, ok", [
    (23, True),          # the answer itself
    ("23", True),        # the text a model wrote after "Answer: "
    (" 23\n", True),     # surrounding spaces
    ("23.0", False),     # strict: an integer's text only
    ("+23", False),      # no sign decoration
    (22, False),         # wrong
    (True, False),       # a bool is not an int here
    (23.0, False),       # nor a float
    ("9" * 10_000, False),  # huge text: capped, never parsed
    (None, False),       # junk
])
def test_verify(answer, ok):
    assert P.verify(P23, answer) is ok


def test_verify_never_raises_on_a_junk_puzzle():
    assert P.verify({"family": "nope"}, 1) is False
    assert P.verify({}, 1) is False


@pytest.mark.parametrize("key, value", [
    ("families", []), ("families", ["fibonacci"]), ("limit_max", 5), ("p_buggy", 1.5),
    ("p_erase_line", True), ("heuristic", "bfs"), ("max_steps", 0),
])
def test_config_errors_name_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        P.Config(**{key: value})
    assert e.value.key.startswith(f"task.{key}")


@pytest.mark.parametrize("obj, field", [
    ({"family": "fibonacci"}, "family"),
    ({"family": "prime"}, "n"),
    ({"family": "prime", "n": "12"}, "n"),
    ({"family": "prime", "n": 10**12}, "n"),
    ({"family": "prime", "n": 12, "extra": 1}, "extra"),
    ({"family": "multiples", "a": 3, "b": 3, "limit": 10}, "b"),
    ([1, 2], "family"),
])
def test_parse_puzzle_names_the_field(obj, field):
    with pytest.raises(ValueError, match=field):
        P.parse_puzzle(obj)


def solved(config, seed):
    rng = random.Random(seed)
    while True:
        puzzle = P.sample(config, rng)
        events = P.solve(puzzle, config, rng)
        if events is not None:
            return puzzle, events


def record_of(puzzle, events, style="backspace", paraphraser="template", seed=0, notes=False):
    words = paraphrase.words(P, events, paraphraser, random.Random(seed), style=style, notes=notes)
    return {"Question": P.question(puzzle), "Answer": events[-1].value, "Reasoning": render(events, words, style, notes=notes),
            "puzzle": puzzle, "split": "train"}


def test_traces_rerun_and_validate_in_every_style():
    for heuristic in P.HEURISTICS:
        config = dataclasses.replace(P.Config(), heuristic=heuristic)
        for seed in range(3):
            puzzle, events = solved(config, seed)
            for style in STYLES:
                record = record_of(puzzle, events, style)
                assert validate.check(record, P, 2048) is None, (style, record["Reasoning"])
                page = collapse(record["Reasoning"])
                assert validate.false_equations(page) == []
                for code, output in P.programs(page):  # the validator's re-run, by hand
                    assert P.execute(code) == output


def test_a_buggy_program_shows_the_real_error_and_is_fixed():
    config = P.Config(p_buggy=1.0, p_erase_line=0.0)
    errors = set()
    for seed in range(8):
        puzzle, events = solved(config, seed)
        page = collapse(record_of(puzzle, events)["Reasoning"])
        found = P.programs(page)
        assert len(found) == 2  # the buggy one, then the fix
        (bad, bad_out), (good, good_out) = found
        assert bad != good and bad_out == P.execute(bad) and good_out == [str(events[-1].value)]
        errors.add(bad_out[-1].split(":")[0] if "Error" in bad_out[-1] else "wrong value")
        assert "Fix" in page or "fix" in page
        assert not any(isinstance(e, Backtrack) for e in events)  # a visible fix, not an erasure
    assert {"IndentationError", "NameError"} & errors, errors


def test_an_erased_line_collapses_to_the_program_without_it():
    config = P.Config(p_buggy=0.0, p_erase_line=1.0)
    for seed in range(4):
        puzzle, events = solved(config, seed)
        wrong = next(e.data["text"] for e in events if isinstance(e, Step) and e.data["kind"] == "wrong")
        text = record_of(puzzle, events)["Reasoning"]
        assert BACKSPACE * (len(wrong) + 1) in text  # the whole line and its newline
        page = collapse(text)
        (code, output), = P.programs(page)
        assert wrong not in code.split("\n") and code.split("\n") == P.FAMILY[puzzle["family"]].program(
            {k: v for k, v in puzzle.items() if k != "family"})
        # the search style keeps the wrong line visible and scratches it; the program read is the same
        search = collapse(record_of(puzzle, events, "search")["Reasoning"])
        assert wrong in search and P.programs(search) == [(code, output)]


def test_check_page_catches_a_tampered_output_and_a_wrong_boxed_value():
    puzzle, events = solved(P.Config(p_buggy=0.0), 1)
    record = record_of(puzzle, events, paraphraser="none")
    answer = str(events[-1].value)
    assert validate.check(record, P, 2048) is None
    tampered = record["Reasoning"].replace(f"<output>\n{answer}\n", f"<output>\n{int(answer) + 1}\n")
    assert validate.check({**record, "Reasoning": tampered}, P, 2048) == "program_output_mismatch"
    boxed = record["Reasoning"].replace(f"<boxed>{answer}</boxed>", f"<boxed>{int(answer) + 1}</boxed>")
    assert validate.check({**record, "Reasoning": boxed}, P, 2048) == "boxed_mismatch"
    no_output = record["Reasoning"].replace("<output>", "<outputs>")
    assert validate.check({**record, "Reasoning": no_output}, P, 2048) == "program_output_mismatch"


def test_a_trace_passes_the_rewards():
    puzzle, events = solved(P.Config(p_buggy=1.0), 2)
    text = record_of(puzzle, events)["Reasoning"]
    cols = {"puzzle": [json.dumps(puzzle)], "task": ["program"]}
    assert REWARDS["program"]([text], **cols) == [1.0]
    assert REWARDS["tags"]([text]) == [1.0]
    assert REWARDS["correctness"]([text], **cols) == [1.0]
    assert judge(text, puzzle, "program")["correct"]


PZ = json.dumps(P23)
RIGHT = "<program>\nprint(sum(n for n in range(10) if n % 3 == 0 or n % 5 == 0))\n</program>\n"


@pytest.mark.parametrize("completion, program, tags", [
    # right program, right box, full format
    (RIGHT + "<output>\n23\n</output>\n<summary>23</summary>\n<boxed>23</boxed>\nAnswer: 23", 1.0, 1.0),
    # the program is re-run: a faked output block does not help
    ("<program>\nprint(22)\n</program>\n<output>\n23\n</output>\n<summary>s</summary>\n<boxed>23</boxed>", 0.0, 1.0),
    # only the LAST program counts: an earlier right one does not
    (RIGHT + "<output>\n23\n</output>\n<program>\nprint(7)\n</program>\n<output>\n7\n</output>\n"
     "<summary>s</summary>\n<boxed>23</boxed>", 0.0, 1.0),
    # a wrong line erased with backspaces before the run is gone from the program
    ("<program>\nprint(1)\n" + BACKSPACE * 9 + "print(23)\n</program>\n<output>\n23\n</output>\n"
     "<summary>s</summary>\n<boxed>23</boxed>", 1.0, 1.0),
    # a program that crashes after printing the answer
    ("<program>\nprint(23)\n1 / 0\n</program>\n<output>\n23\n</output>\n<summary>s</summary>\n<boxed>23</boxed>",
     0.0, 1.0),
    # a program that never ends is killed (5 s); the reward is 0
    ("<program>\nwhile True: pass\n</program>\n<output>\n</output>\n<summary>s</summary>\n<boxed>23</boxed>",
     0.0, 1.0),
    # right program but no boxed value
    (RIGHT + "<output>\n23\n</output>\n<summary>23</summary>\nAnswer: 23", 0.0, 0.0),
    # a program without its output block breaks the format
    (RIGHT + "<summary>23</summary>\n<boxed>23</boxed>", 1.0, 0.0),
    # text outside the blocks breaks the format
    ("So:\n" + RIGHT + "<output>\n23\n</output>\n<summary>s</summary>\n<boxed>23</boxed>", 1.0, 0.0),
    # a malformed stream (erases more than was written) gets nothing
    (BACKSPACE + RIGHT + "<boxed>23</boxed>", 0.0, 0.0),
])
def test_rewards_table(completion, program, tags):
    assert REWARDS["program"]([completion], puzzle=[PZ], task=["program"]) == [program]
    assert REWARDS["tags"]([completion]) == [tags]


def test_program_reward_is_correctness_for_other_tasks():
    p = json.dumps({"numbers": [2, 3, 4], "target": 20})
    assert REWARDS["program"](["2 + 3 = 5\n5 * 4 = 20\nAnswer: (2 + 3) * 4"], puzzle=[p], task=["countdown"]) == [1.0]


def test_grpo_uses_the_sandboxed_rewards_for_task_program():
    from train.trl_configs import grpo_rewards
    grpo = {"rewards": ["correctness"], "reward_weights": [1.0], "task_rewards": {}}
    # the task's own GRPO_REWARDS, where it declares them; grpo.rewards for the others
    assert grpo_rewards({"grpo": grpo, "data": {"task": "program"}}) == (["program", "tags"], [1.0, 0.2])
    assert grpo_rewards({"grpo": grpo, "data": {"task": "countdown"}}) == (["correctness"], [1.0])
    # grpo.task_rewards.<task> overrides the task's own
    grpo["task_rewards"] = {"program": {"rewards": ["correctness"], "reward_weights": [1.0]}}
    assert grpo_rewards({"grpo": grpo, "data": {"task": "program"}}) == (["correctness"], [1.0])


@pytest.mark.slow
def test_python_m_train_smoke_runs_end_to_end(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "train", "experiment=smoke", "data.task=program", "data.n=24", "data.n_test=4",
         f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", "sft.max_steps=2",
         "grpo.max_steps=1", "eval.n_problems=2", "eval.max_new_tokens=32"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["grpo_steps"] == 1 and "accuracy" in metrics
    assert "rewards/program_reward" in res.stdout + res.stderr  # the sandboxed reward was logged
