"""The contract every registered task is held to, one loop over ``solvers.TASKS``:

solve -> render (every style, every variant) -> collapse -> verify is correct, the
invariant ``collapse(backspace) == collapse(backtrack_token) == direct`` holds, and the
validator accepts what the solver wrote. Then the whole pipeline, in process and through
``python -m generate``, for every task that samples its own puzzles.

A task whose steps an LLM proposes (``PROPOSES``: llm_search) has no sampler; here it gets
arithmetic questions and the deterministic proposer of tests/llm_servers.py, and its
pipeline runs against the fake provider servers in tests/test_llm_search.py.
"""

import dataclasses
import json
import types
import random
import re

import pytest

from generate import paraphrase, pipeline, validate
from solvers import TASKS, variants
from solvers.config import ConfigError
from solvers.task import REQUIRED, Task, TaskError, Tool, register
from solvers.trace import (BACKSPACE, STYLES, Answer, Backtrack, Step, check_events, collapse,
                           erased_mask, final_answer, render)
from tests.llm_servers import arithmetic_proposer
from train.rewards import judge

NAMES = sorted(TASKS)
SAMPLED = [n for n in NAMES if not TASKS[n].PROPOSES]  # the pipeline draws their puzzles
VARIANTS = [  # (notes, slips, think): plain, each variant alone, all at once
    (False, 0.0, 0.0), (True, 0.0, 0.0), (False, 0.5, 0.0), (False, 0.0, 0.5), (True, 0.5, 0.5)]


def solved(task, config, seed):
    """A (puzzle, events) the task's sampler and solver make from ``seed``."""
    rng = random.Random(seed)
    if task.PROPOSES:
        return proposed(task, config, rng)
    for _ in range(200):
        puzzle = task.sample(config, rng)
        events = task.solve(puzzle, config, rng)
        if events is not None:
            return puzzle, events
    raise AssertionError(f"{task.NAME}: 200 draws without a solved puzzle")


def proposed(task, config, rng):
    """A (puzzle, events) of a PROPOSES task: "What is a op b op c?" solved with the fake proposer
    (it proposes a wrong-order step first, so about half the traces abandon a step)."""
    for _ in range(200):
        nums = [rng.randint(1, 20) for _ in range(3)]
        ops = [rng.choice("+-*") for _ in range(2)]
        expr = f"{nums[0]} {ops[0]} {nums[1]} {ops[1]} {nums[2]}"
        puzzle = task.parse_puzzle({"Question": f"What is {expr}?", "Answer": eval(expr)})  # our own digits
        events = task.solve(puzzle, config, rng, propose=arithmetic_proposer)
        if events is not None:
            return puzzle, events
    raise AssertionError(f"{task.NAME}: 200 questions without a solved one")


@pytest.mark.parametrize("name", NAMES)
def test_task_is_registered_under_its_name_with_a_config_that_checks_itself(name):
    task = TASKS[name]
    assert isinstance(task, Task) and task.NAME == name and task.module.NAME == name
    config = task.Config()
    assert config.heuristic == task.HEURISTICS[0]  # the first heuristic is the default
    with pytest.raises(ConfigError) as e:
        task.Config(heuristic="no-such-order")
    assert e.value.key == "task.heuristic"


@pytest.mark.parametrize("name", NAMES)
def test_solve_render_collapse_verify(name):
    task = TASKS[name]
    abandoned = 0
    for heuristic in task.HEURISTICS:
        config = dataclasses.replace(task.Config(), heuristic=heuristic)
        for seed in range(12):
            puzzle, events = solved(task, config, seed)
            check_events(events)
            assert isinstance(events[-1], Answer)
            abandoned += any(isinstance(e, Backtrack) for e in events)
            answer = events[-1].value
            assert task.verify(puzzle, answer) and task.verify(puzzle, f" {answer} ")
            assert task.puzzle_key(task.parse_puzzle(json.loads(json.dumps(puzzle)))) == task.puzzle_key(puzzle)
            question = task.question(puzzle)
            assert "\n" not in question and BACKSPACE not in question

            for notes, slips, think in VARIANTS:
                rng = random.Random(f"{seed}/{notes}/{slips}/{think}")
                ev = variants.think(events, think, rng) if think else events
                check_events(ev)
                for paraphraser in ("none", "template"):
                    texts = {}
                    for style in STYLES:
                        words = paraphrase.words(task, ev, paraphraser, random.Random(seed), style=style,
                                                 notes=notes, slips=slips)
                        for w, e in zip(words, ev):  # a step is one line
                            if isinstance(e, Step):
                                assert collapse(w).endswith("\n") and collapse(w).count("\n") == 1, w
                        texts[style] = render(ev, words, style, notes=notes)
                    direct = texts["direct"]
                    assert BACKSPACE not in direct
                    assert collapse(texts["backspace"]) == direct
                    assert collapse(texts["backtrack_token"]) == direct
                    assert final_answer(direct) == str(answer)
                    for style, text in texts.items():
                        record = {"Question": question, "Answer": answer, "Reasoning": text, "puzzle": puzzle,
                                  "split": "train"}
                        assert validate.check(record, task, 10**6) is None, (name, style, text)
                        # the independent re-check: what a reward function sees
                        assert judge(text, puzzle, name)["correct"], (name, style, text)
                    if slips == 0.0:
                        assert validate.false_equations(texts["search"]) == []
    assert abandoned > 0, f"{name}: no trace abandoned a step: nothing to erase"


@pytest.mark.parametrize("name", NAMES)
def test_slips_never_survive_into_the_kept_text(name):
    task = TASKS[name]
    slipped = sites = 0
    for seed in range(20):
        puzzle, events = solved(task, task.Config(), seed)
        words = paraphrase.words(task, events, "none", random.Random(seed), slips=1.0)
        plain = paraphrase.words(task, events, "none", random.Random(seed))
        sites += sum(bool(re.search(r"= -?\d", p)) for p in plain)
        for w, p in zip(words, plain):
            assert collapse(w) == p  # what is left is the plain step
            if BACKSPACE in w:
                slipped += 1
                mask = erased_mask(w)
                wrong = "".join(c for c, m in zip(w, mask) if m)
                assert wrong and wrong.lstrip("-").isdigit()  # the slip was a number, then erased
    if sites == 0:
        pytest.skip(f"{name} writes no '= N' results: nothing to slip")
    assert slipped > 0


@pytest.mark.parametrize("name", SAMPLED)
@pytest.mark.parametrize("style", STYLES)
def test_pipeline_writes_valid_records_for_every_task_and_style(name, style, tmp_path, gen_cfg):
    cfg = gen_cfg(tmp_path / "out", **{"task": {"name": name}, "style": style, "n": 12, "n_val": 4, "n_test": 4,
                                       "mix": True, "notes": True, "think": 0.3, "slips": 0.3})
    out, gen = pipeline.run(cfg)
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["variants"] == {"mix": True, "think": 0.3, "notes": True, "slips": 0.3}
    assert man["counts"] == {"train": 12, "val": 4, "test": 4}
    task = TASKS[name]
    heuristics = set()
    for split in ("train", "val", "test"):
        for line in (out / split / "shard-00000.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert r["task"] == name and r["style"] == style and r["split"] == split
            assert validate.check(r, task, 2048) is None
            assert judge(r["Reasoning"], r["puzzle"], name)["correct"]
            heuristics.add(r["heuristic"])
    assert len(heuristics) > 1  # mix drew more than one search order


@pytest.mark.parametrize("name", SAMPLED)
def test_python_m_generate_runs_for_every_task(name, cli, tmp_path):
    out = tmp_path / name
    res = cli(f"task={name}", "n=20", "n_val=5", "n_test=5", f"out={out}", "progress=false", "notes=true")
    assert res.returncode == 0, res.stderr
    lines = (out / "train" / "shard-00000.jsonl").read_text().splitlines()
    assert len(lines) == 20
    for line in lines:
        r = json.loads(line)
        assert validate.check(r, TASKS[name], 2048) is None


@pytest.mark.parametrize("name", SAMPLED)
def test_problems_file_works_for_every_task(name, tmp_path, gen_cfg):
    task = TASKS[name]
    puzzles = [solved(task, task.Config(), seed)[0] for seed in range(5)]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in puzzles))
    out, _ = pipeline.run(gen_cfg(tmp_path / "out", **{"task": {"name": name}, "problems": str(path)}))
    records = [json.loads(x) for x in (out / "train" / "shard-00000.jsonl").read_text().splitlines()]
    assert sorted(task.puzzle_key(r["puzzle"]) for r in records) == sorted(task.puzzle_key(p) for p in puzzles)


@pytest.mark.parametrize("key, value", [
    ("think", 1.5), ("slips", -0.1), ("slips", True), ("mix", "yes"), ("notes", 1),
    ("layout", "sos"), ("traces_layout", "csv"), ("decontaminate_ngram", 0),
])
def test_bad_variant_or_interop_values_name_the_key(key, value, tmp_path, gen_cfg):
    cfg = gen_cfg(tmp_path / "out", **{key: value})
    if key == "traces_layout":  # only checked when traces are given
        (tmp_path / "t.jsonl").write_text("{}\n")
        cfg["traces"] = str(tmp_path / "t.jsonl")
    with pytest.raises(ConfigError) as e:
        pipeline.settings(cfg)
    assert e.value.key == key


def _module(**parts):
    """A stand-in task module: countdown's required parts, with ``parts`` on top."""
    from solvers import countdown
    fake = types.ModuleType("fake_task")
    for part in REQUIRED:
        setattr(fake, part, getattr(countdown, part))
    fake.NAME = "fake"
    for key, value in parts.items():
        setattr(fake, key, value)
    return fake


@pytest.mark.parametrize("parts, named", [
    ({"verify": None}, "verify"),                        # a required part that is not a function
    ({"ANSWER_KIND": "float"}, "ANSWER_KIND"),           # answers are ints or text
    ({"PROPOSES": True}, "RECORDABLE"),                  # no sampler, so the recorder cannot draw one
    ({"REASONS": ("mine",)}, "REASONS"),                 # reasons with no check_page to return them
    ({"GRPO_REWARDS": (("program",),)}, "GRPO_REWARDS"),  # a reward without its weight
    ({"TOOL": "</program>"}, "TOOL"),                    # a tool is a Tool
    ({"NAME": "two words"}, "NAME"),                     # a name is used as a key=value override
])
def test_register_refuses_a_module_that_breaks_the_contract_naming_the_part(parts, named):
    with pytest.raises(TaskError, match=named):
        register(_module(**parts))


def test_register_refuses_a_missing_part_and_a_second_task_of_the_same_name():
    fake = _module()
    del fake.note_slots
    with pytest.raises(TaskError, match="lacks note_slots"):
        register(fake)
    registry = {}
    register(_module(), registry)
    with pytest.raises(TaskError, match="registered already"):
        register(_module(), registry)


def test_optional_parts_get_their_defaults():
    task = register(_module())
    assert (task.ANSWER_KIND, task.PROPOSES, task.RECORDABLE, task.REASONS, task.REWARDS, task.TOOL, task.CHECKER) == \
        ("int", False, True, (), {}, None, None)
    tool = Tool(close="</x>", pending=lambda text: None, run=lambda code, timeout: "")
    assert register(_module(TOOL=tool)).TOOL is tool


def test_no_file_outside_solvers_names_a_task():
    """The task is the seam: code outside solvers/ asks the Task, never tests a task's name."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    names = "|".join(NAMES)
    # a task's name in quotes, other than as a default value (a CLI default is a preset); doctests may name one
    pattern = re.compile(rf"""(?<!default=)(?<!str = )["']({names})["']""")
    offenders = [f"{path.relative_to(root)}:{i}" for folder in ("generate", "train")
                 for path in sorted((root / folder).rglob("*.py"))
                 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line.split("#")[0]) and not line.strip().startswith((">>>", "..."))]
    assert not offenders, offenders
