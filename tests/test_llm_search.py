"""task=llm_search: the DFS with plain Python proposers, then end to end through the real SDKs
against the fake provider servers of tests/llm_servers.py (which count requests, so "a re-run
pays nothing" is a count)."""

import json
import random

import pytest
from omegaconf import OmegaConf

from generate import paraphrase, pipeline, validate
from solvers import llm_search as ls
from solvers.config import ConfigError
from solvers.trace import BACKSPACE, Answer, Backtrack, Step, check_events, collapse, render
from tests.conftest import ROOT

P = {"Question": "What is 12 + 7 * 3?", "Answer": 33}


def scripted(table):
    """A proposer answering from {steps so far (tuple): candidates}; it records what it was asked."""
    def propose(question, steps, k):
        propose.asked.append(tuple(steps))
        return table.get(tuple(steps), [])
    propose.asked = []
    return propose


def texts(events):
    """The trace as (kind, text) pairs, for comparing searches."""
    return [("step", e.data["text"]) if isinstance(e, Step) else ("back", e.k) if isinstance(e, Backtrack)
            else ("answer", e.value) for e in events]


def backspace_text(events):
    return render(events, paraphrase.words(ls, events, "none", None), "backspace")


# ----------------------------------------------------------------------------- the module

@pytest.mark.parametrize("answer, ok", [
    (33, True),           # the Answer value itself
    (" 33 ", True),       # a model's text after "Answer: "
    ("33", True),
    ("33.0", False),      # strict integer text
    ("+33", False),
    ("3,3", False),
    (True, False),        # a bool is not an int here
    (33.0, False),        # nor a float
    (None, False),
    ("9" * 10**5, False), # huge junk: capped, never parsed
    ("thirty-three", False),
])
def test_verify(answer, ok):
    assert ls.verify(P, answer) is ok


@pytest.mark.parametrize("field, value", [("k", 0), ("k", 11), ("max_depth", 0), ("max_steps", 0),
                                          ("heuristic", "best"), ("false_steps", "keep")])
def test_config_errors_name_the_key(field, value):
    with pytest.raises(ConfigError) as e:
        ls.Config(**{field: value})
    assert e.value.key == f"task.{field}"


@pytest.mark.parametrize("obj, field", [
    ({"Answer": 4}, "Question"),                      # missing
    ({"Question": "  ", "Answer": 4}, "Question"),    # blank
    ({"Question": "a\bb", "Answer": 4}, "Question"),  # erasing characters would corrupt the record
    ({"Question": "What?", "Answer": "4"}, "Answer"), # the seed format's Answer is an int
    ({"Question": "What?", "Answer": 4.0}, "Answer"),
    ({"Question": "What?", "Answer": True}, "Answer"),
    (["What?", 4], "Question"),                       # not an object: the message shows the format
])
def test_parse_puzzle_errors_name_the_field(obj, field):
    with pytest.raises(ValueError) as e:
        ls.parse_puzzle(obj)
    assert field in str(e.value)


def test_question_is_one_line_and_keys_ignore_case_and_spacing():
    p = ls.parse_puzzle({"Question": "What is\n 2 + 2?", "Answer": 4})
    assert ls.question(p) == "What is 2 + 2?"
    assert ls.puzzle_key(p) == ls.puzzle_key({"Question": "what IS 2 + 2?", "Answer": 4})


def test_sample_says_a_problems_file_is_needed():
    with pytest.raises(ConfigError) as e:
        ls.sample(ls.Config(), random.Random(0))
    assert e.value.key == "problems" and "Question" in str(e.value)


def test_solve_without_a_proposer_says_so():
    with pytest.raises(ValueError, match="propose"):
        ls.solve(P, ls.Config(), random.Random(0))


# ----------------------------------------------------------------------------- the search

RIGHT = {(): ["7 * 3 = 21"], ("7 * 3 = 21",): ["12 + 21 = 33"], ("7 * 3 = 21", "12 + 21 = 33"): ["Answer: 33"]}


def test_a_wrong_path_is_written_then_erased_and_the_right_one_kept():
    table = {**RIGHT, (): ["12 + 7 = 19", "7 * 3 = 21"], ("12 + 7 = 19",): ["19 * 3 = 57"],
             ("12 + 7 = 19", "19 * 3 = 57"): ["Answer: 57"]}
    events = ls.solve(P, ls.Config(), random.Random(0), scripted(table))
    check_events(events)
    assert texts(events) == [("step", "12 + 7 = 19"), ("step", "19 * 3 = 57"), ("step", "Answer: 57"),
                             ("back", 3), ("step", "7 * 3 = 21"), ("step", "12 + 21 = 33"), ("answer", 33)]
    text = backspace_text(events)
    erased = len("12 + 7 = 19\n19 * 3 = 57\nAnswer: 57\n")
    assert BACKSPACE * erased in text
    assert collapse(text) == "7 * 3 = 21\n12 + 21 = 33\nAnswer: 33"
    assert events[-2].data["final"] and not events[-3].data["final"]  # think never drops the last step


def test_false_arithmetic_is_pruned_by_default_and_erased_on_request():
    table = {**RIGHT, (): ["7 * 3 = 24", "7 * 3 = 21"]}
    pruned = ls.solve(P, ls.Config(), random.Random(0), scripted(table))
    assert "7 * 3 = 24" not in [t for _, t in texts(pruned)]
    assert not any(isinstance(e, Backtrack) for e in pruned)
    # as_proposed + erase: the model's false first idea is written, then erased at once
    erased = ls.solve(P, ls.Config(heuristic="as_proposed", false_steps="erase"), random.Random(0), scripted(table))
    assert texts(erased)[:3] == [("step", "7 * 3 = 24"), ("back", 1), ("step", "7 * 3 = 21")]
    assert validate.false_equations(collapse(backspace_text(erased))) == []
    # checked + erase: what passes goes first, so the false step is never reached here
    checked = ls.solve(P, ls.Config(false_steps="erase"), random.Random(0), scripted(table))
    assert texts(checked) == texts(pruned)


def test_multi_operation_equations_are_false_to_the_checker():
    # sympy calls "12 + 7 * 3 = 33" true, but the page's validator reads "7 * 3 = 33": pruned
    table = {**RIGHT, (): ["12 + 7 * 3 = 33", "7 * 3 = 21"]}
    events = ls.solve(P, ls.Config(), random.Random(0), scripted(table))
    assert texts(events)[0] == ("step", "7 * 3 = 21")


def test_checked_ranks_the_right_answer_and_verified_steps_first():
    table = {**RIGHT, (): ["Let me think.", "Answer: 30", "7 * 3 = 21"],
             ("7 * 3 = 21",): ["Answer: 40", "12 + 21 = 33"]}
    events = ls.solve(P, ls.Config(), random.Random(0), scripted(table))
    assert texts(events) == [("step", "7 * 3 = 21"), ("step", "12 + 21 = 33"), ("answer", 33)]
    proposed = ls.solve(P, ls.Config(heuristic="as_proposed"), random.Random(0), scripted(table))
    assert texts(proposed)[:3] == [("step", "Let me think."), ("back", 1), ("step", "Answer: 30")]


def test_the_proposer_sees_only_the_live_path():
    table = {**RIGHT, (): ["12 + 7 = 19", "7 * 3 = 21"]}
    propose = scripted(table)
    ls.solve(P, ls.Config(), random.Random(0), propose)
    assert propose.asked == [(), ("12 + 7 = 19",), ("7 * 3 = 21",), ("7 * 3 = 21", "12 + 21 = 33")]


def test_repeats_and_junk_are_dropped():
    table = {**RIGHT, (): ["", "a\nb " * 100, "7 * 3 = 21", "7 * 3 = 21"],
             ("7 * 3 = 21",): ["7 * 3 = 21", "12 + 21 = 33"]}
    events = ls.solve(P, ls.Config(), random.Random(0), scripted(table))
    assert texts(events) == [("step", "7 * 3 = 21"), ("step", "12 + 21 = 33"), ("answer", 33)]


def test_budget_and_depth():
    endless = lambda q, steps, k: [f"Step {len(steps) + 1}: think.", f"Step {len(steps) + 1}: think more."]
    assert ls.solve(P, ls.Config(max_steps=5), random.Random(0), endless) is None  # budget exhausted
    # at the depth limit only an answer may follow: a path of 1 step cannot reach step 2
    assert ls.solve(P, ls.Config(max_depth=1), random.Random(0), scripted(RIGHT)) is None
    assert ls.solve(P, ls.Config(max_depth=2), random.Random(0), scripted(RIGHT)) is not None
    # nothing proposed at all: a dead root
    assert ls.solve(P, ls.Config(), random.Random(0), scripted({})) is None


def test_an_answer_at_once_is_a_trace_with_no_steps():
    events = ls.solve(P, ls.Config(), random.Random(0), scripted({(): ["Answer: 33"]}))
    assert events == [Answer(33)]


# ----------------------------------------------------------------------------- end to end

QUESTIONS = ["What is 12 + 7 * 3?", "What is 4 * 5 + 6?", "What is 9 - 2 * 3?", "What is 2 + 3 + 4?",
             "What is 15 - 4 * 2 + 1?", "What is 6 * 7?"]


def problems_file(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"Question": q, "Answer": eval(q[8:-1])}) + "\n" for q in QUESTIONS))
    return path


def search_cfg(gen_cfg, out, server, provider, cache, problems, **task):
    p = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "proposer" / f"{provider}.yaml"))
    p.update({"base_url": server.url, "model": "fake-model", "cache_dir": str(cache), "timeout": 5, "max_retries": 1})
    cfg = gen_cfg(out, problems=str(problems), shard_size=4)
    cfg["task"] = {"name": "llm_search", **task}
    cfg["proposer"] = p
    return cfg


def records(out):
    return [json.loads(x) for f in sorted((out / "train").glob("shard-*.jsonl")) for x in f.read_text().splitlines()]


@pytest.fixture(params=["openai", "anthropic"])
def provider(request, openai_server, anthropic_server):
    server = openai_server if request.param == "openai" else anthropic_server
    return request.param, server, "/chat/completions" if request.param == "openai" else "/v1/messages"


def test_records_pass_the_validator_and_a_rerun_pays_nothing(provider, gen_cfg, tmp_path):
    name, server, path = provider
    problems = problems_file(tmp_path)
    out, _ = pipeline.run(search_cfg(gen_cfg, tmp_path / "a", server, name, tmp_path / "cache", problems))
    rs = records(out)
    assert [r["Question"] for r in rs] == QUESTIONS
    for r in rs:
        assert validate.check(r, ls, 2048) is None
        assert type(r["Answer"]) is int and r["task"] == "llm_search"
    # the fake proposes the left-to-right step first: where * comes later, that path is erased
    erased = {r["Question"] for r in rs if BACKSPACE in r["Reasoning"]}
    assert erased == {"What is 12 + 7 * 3?", "What is 9 - 2 * 3?", "What is 15 - 4 * 2 + 1?"}
    first = rs[0]
    assert collapse(first["Reasoning"]) == "7 * 3 = 21\n12 + 21 = 33\nAnswer: 33"
    assert first["Reasoning"].startswith("12 + 7 = 19\n19 * 3 = 57\nAnswer: 57\n\b")
    requests = server.count(path)
    man = json.loads((out / "manifest.json").read_text())
    assert man["proposer"]["provider"] == name and man["proposer"]["requests"] == requests > len(QUESTIONS)
    assert man["proposer"]["input_tokens"] > 0 and man["proposer"]["estimated_cost_usd"] > 0
    assert man["fingerprint"]["proposer"]["model"] == "fake-model"
    # the same config into another directory: every node's candidates come from the cache
    out2, _ = pipeline.run(search_cfg(gen_cfg, tmp_path / "b", server, name, tmp_path / "cache", problems))
    assert server.count(path) == requests
    assert json.loads((out2 / "manifest.json").read_text())["proposer"]["cached"] == requests
    assert records(out2) == rs


def test_a_malformed_answer_is_a_dead_node_and_a_failed_request_is_named(gen_cfg, tmp_path, openai_server):
    problems = tmp_path / "q.jsonl"
    problems.write_text(json.dumps({"Question": "What is 6 * 7?", "Answer": 42}) + "\n"
                        + json.dumps({"Question": "What is 2 + 3?", "Answer": 5}) + "\n"
                        # a third that works: a run in which no question gives a record is an error
                        + json.dumps({"Question": "What is 4 * 5 + 6?", "Answer": 26}) + "\n")
    openai_server.fail_next("malformed")   # the root of the first question: nothing to search
    openai_server.fail_next("500", times=2)  # max_retries=1: the second question's root fails for good
    out, _ = pipeline.run(search_cfg(gen_cfg, tmp_path / "out", openai_server, "openai", tmp_path / "cache",
                                     problems))
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": 1}
    assert man["splits"]["train"]["rejections"] == {"propose_failed": 1, "unsolved": 1}
    assert man["proposer"]["failed"] == 1


def test_the_command_line_config_with_two_workers(tmp_path, openai_server):
    # composed as `python -m generate task=llm_search problems=... proposer=openai ...` composes it
    # (in process: a subprocess would spend most of this test importing the SDKs again)
    from hydra import compose, initialize_config_dir
    problems = problems_file(tmp_path)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("generate", overrides=[
            "task=llm_search", f"problems={problems}", "proposer=openai", f"proposer.base_url={openai_server.url}",
            "proposer.model=fake-model", f"proposer.cache_dir={tmp_path / 'cache'}", "workers=2", "shard_size=2",
            "task.heuristic=as_proposed", f"out={tmp_path / 'out'}", "progress=false"])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    out, _ = pipeline.run(cfg)
    rs = records(out)
    assert len(rs) == len(QUESTIONS) and all(validate.check(r, ls, 2048) is None for r in rs)
    man = json.loads((out / "manifest.json").read_text())
    assert man["proposer"]["requests"] == openai_server.count("/chat/completions")  # the usage of both workers
    assert not (out / ".work").exists()


@pytest.mark.parametrize("overrides, key", [
    ({}, "problems"),                                   # no generator: a problems file is needed
    ({"proposer": {"name": "none"}}, "proposer"),       # and an LLM to propose the steps
    ({"proposer": {"name": "openai", "model": "m", "batch": True}}, "proposer.batch"),
])
def test_settings_errors_name_the_key(overrides, key, gen_cfg, tmp_path):
    cfg = gen_cfg(tmp_path / "out")
    cfg["task"] = {"name": "llm_search"}
    cfg["proposer"] = {"name": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    if key != "problems":
        cfg["problems"] = str(problems_file(tmp_path))
    cfg.update(overrides)
    with pytest.raises(ConfigError) as e:
        pipeline.settings(cfg)
    assert e.value.key == key
