"""task=equation24: what tests/test_tasks.py's contract loop cannot know about this task: its
rules (whole numbers in the search, any exact expression in the verifier), its inputs'
errors, its independent checker and the recorder serving it."""

import json
import random
import threading
import urllib.request

import pytest

from generate.record import SAMPLED_TASKS, Recorder, RecordServer
from solvers import TASKS, equation24
from solvers.config import ConfigError
from solvers.equation24 import Config, parse_puzzle, sample, search, solve, verify
from solvers.trace import Answer, Backtrack, Step

P = {"digits": [3, 3, 8, 8], "target": 24}


@pytest.mark.parametrize("answer, right", [
    ("8 / (3 - 8 / 3)", True),       # the classic: a fraction on the way is fine for the verifier
    (" 8÷(3−8÷3) ".replace("−", "-"), True),  # spaces and the division sign
    ("8 * 3 + 8 - 8", False),        # 8 used three times, 3 once
    ("(8 + 8) * 3 / 3 + 8", False),  # five numbers
    ("33 - 8 - 8 / 8", False),       # 33 is not a digit
    ("8 * 3", False),                # digits left over
    ("3 * 8 + 3 - 3 + 8 - 8", False),  # every digit, but too many
    ("8 ** 3 / 3 / 8", False),       # powers are refused
    ("__import__('os')", False),     # nothing is evaluated
    ("8 / (3 - 3) + 8", False),      # division by zero
    (24, False),                     # an answer is text
    ("(" * 60 + "8" + ")" * 60, False),  # over the length limit
])
def test_verify(answer, right):
    assert verify(P, answer) is right


@pytest.mark.parametrize("digits, solvable", [
    ([4, 7, 8, 8], True),    # (7 - 8 / 8) * 4
    ([1, 2, 3, 4], True),    # 1 * 2 * 3 * 4
    ([1, 1, 1, 1], False),   # 4 at most
    ([3, 3, 8, 8], False),   # needs 8 / 3 on the way: the whole-number search cannot
    ([1, 5, 5, 5], False),   # (5 - 1 / 5) * 5 likewise
])
def test_complete_search_solves_whole_number_puzzles_only(digits, solvable):
    puzzle = {"digits": digits, "target": 24}
    events = search(puzzle, Config(), random.Random(0), budget=None)
    assert (events is not None) is solvable
    if solvable:
        assert isinstance(events[-1], Answer) and verify(puzzle, events[-1].value)


def test_a_trace_writes_dead_ends_and_never_a_last_move_that_misses():
    """[1, 1, 1, 8]'s closest-first search meets dead ends before (1 + 1 + 1) * 8; a step with
    two numbers left is written only when it hits the target (the search does it in its head)."""
    events = search({"digits": [1, 1, 1, 8], "target": 24}, Config(), random.Random(0), budget=None)
    assert any(isinstance(e, Backtrack) for e in events)
    steps = [e.data for e in events if isinstance(e, Step)]
    assert all(len(s["left"]) >= 2 for s in steps if not s["final"])
    assert [s["final"] for s in steps].count(True) == 1 and steps[-1]["result"] == 24


def test_max_steps_is_the_budget_of_a_trace():
    puzzle = {"digits": [1, 1, 1, 8], "target": 24}
    full = search(puzzle, Config(), random.Random(0), budget=None)
    written = sum(isinstance(e, Step) for e in full)
    assert solve(puzzle, Config(max_steps=written), random.Random(0)) == full
    assert solve(puzzle, Config(max_steps=written - 1), random.Random(0)) is None


@pytest.mark.parametrize("digits, max_steps, reason", [
    ([4, 7, 8, 8], 20, ""),               # traced
    ([4, 7, 8, 8], 1, "unsolved"),        # it has a solution, but not within one written step
    ([3, 3, 8, 8], 20, "no_solution"),    # the complete search proves there is none by whole numbers
])
def test_a_given_puzzle_is_traced_or_rejected_with_the_reason(digits, max_steps, reason):
    events, why = equation24.solve_given({"digits": digits, "target": 24}, Config(max_steps=max_steps),
                                         random.Random(0))
    assert why == reason and (events is not None) == (reason == "")


@pytest.mark.parametrize("target", [24, 10, 100])
def test_sampled_puzzles_are_solvable_and_have_the_configured_target(target):
    rng = random.Random(target)
    for _ in range(20):
        puzzle = sample(Config(target=target), rng)
        assert puzzle["target"] == target and len(puzzle["digits"]) == 4
        assert search(puzzle, Config(target=target), rng, budget=None) is not None


def test_an_unreachable_target_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as e:
        sample(Config(target=6000), random.Random(0))  # four digits make 6561 = 9**4, but never 6000
    assert e.value.key == "task.target"


@pytest.mark.parametrize("values, key", [
    ({"target": 0}, "task.target"),           # a target is positive
    ({"target": 9 ** 4 + 1}, "task.target"),  # more than four digits can make
    ({"heuristic": "sum"}, "task.heuristic"),  # not one of this task's orders
    ({"max_steps": 0}, "task.max_steps"),     # a trace writes at least its last step
])
def test_bad_config_names_the_key(values, key):
    with pytest.raises(ConfigError) as e:
        Config(**values)
    assert e.value.key == key


@pytest.mark.parametrize("obj, field", [
    ({"digits": [1, 2, 3], "target": 24}, "'digits'"),        # three digits
    ({"digits": [1, 2, 3, 10], "target": 24}, "'digits'"),    # 10 is not a digit
    ({"digits": [1, 2, 3, 4], "target": "24"}, "'target'"),   # a target is an integer
    ({"digits": [1, 2, 3, 4]}, "target"),                     # missing
    ({"numbers": [1, 2, 3, 4], "target": 24}, "digits"),      # Countdown's field name
])
def test_parse_puzzle_names_the_bad_field(obj, field):
    with pytest.raises(ValueError, match=field):
        parse_puzzle(obj)


@pytest.mark.parametrize("completion, right", [
    ("8 / 8 = 1. Left: 1, 4, 7.\n7 - 1 = 6. Left: 4, 6.\n6 * 4 = 24. That is 24.\nAnswer: (7 - 8 / 8) * 4", True),
    ("Answer: 4 * 7 - 8 / 8" + "\b" * 13 + "(7 - 8 / 8) * 4", True),  # the backspaces applied
    ("Answer: (7 - 8 / 8) * 4\n<backtrack>", False),  # the answer line erased: no answer
    ("Answer: 8 * 8 / 7 * 4", False),                  # not 24
])
def test_independent_checker_agrees_with_the_verifier(completion, right):
    """rejudge's CHECKER reads the raw completion with its own code; on these it must agree."""
    puzzle = {"digits": [4, 7, 8, 8], "target": 24}
    assert TASKS["equation24"].CHECKER is equation24.independent_check
    assert equation24.independent_check(puzzle, completion) is right


def test_the_recorder_serves_its_questions_and_takes_a_text_answer(tmp_path):
    """python -m generate.record --task equation24, over its HTTP API as tests/test_record.py drives it:
    listed as a task, a question drawn, an expression (not an integer) checked and saved."""
    assert "equation24" in SAMPLED_TASKS
    server = RecordServer(Recorder(task="equation24", out=tmp_path), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def post(path, body):
        req = urllib.request.Request(server.url.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as reply:
            return json.loads(reply.read())

    try:
        q = post("/api/next", {})
        assert q["task"] == "equation24" and q["answer_kind"] == "text"
        puzzle = server.recorder.question(q["id"]).puzzle
        answer = search(puzzle, Config(), random.Random(0), budget=None)[-1].value
        assert post("/api/check", {"id": q["id"], "answer": "1 + 2 + 3 + 4"})["correct"] is False
        saved = post("/api/save", {"id": q["id"], "answer": answer, "reasoning": f"No.\n\b\b\b\bAnswer: {answer}"})
        assert saved["correct"] is True
        record = json.loads((tmp_path / saved["saved"]).read_text())
        assert record["Answer"] == answer and record["puzzle"] == puzzle
    finally:
        server.shutdown()
        server.server_close()
