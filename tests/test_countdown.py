"""Countdown: the verifier, the sampler and the solver."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generate.paraphrase import words
from solvers import countdown as cd
from solvers.config import ConfigError
from solvers.trace import Backtrack, Step, check_events, collapse, final_answer, render


@pytest.mark.parametrize("numbers, target, answer, ok", [
    ([25, 8, 3, 5], 46, "(25 - 8) * 3 - 5", True),     # the plain case
    ([5, 3, 8, 25], 46, "(25-8)*3-5", True),           # any order, any spacing
    ([25, 8, 3, 5], 46, "(25 - 8) * 3", False),        # a number left unused
    ([25, 8, 3, 5], 46, "(25 - 8) * 3 - 5 + 5 - 5", False),  # a number used twice
    ([4, 4, 6], 14, "4 + 6 + 4", True),                # repeated numbers, each used once
    ([4, 4, 6], 14, "4 * 4 - 6 + 4", False),           # a repeated number used three times
    ([4, 4, 6], 10, "4 + 6", False),                   # repeated number used only once
    ([4, 6, 6], 10, "4 + 6", False),                   # other repeat missing
    ([6, 4, 4, 4], 10, "6 + 4 * 4 / 4", True),         # three copies, all used
    ([3, 3, 8, 8], 24, "8 / (3 - 8 / 3)", True),       # exact division through fractions
    ([7, 2], 3, "7 / 2", False),                       # 3.5 is not 3: no integer division
    ([6, 2], 3, "6 / 2", True),                        # exact division
    ([5, 5], 1, "5 / (5 - 5)", False),                 # division by zero is not an answer
    ([10, 3], 7, "10 − 3", True),                      # unicode minus, as people type it
    ([6, 2], 12, "6 × 2", True),                       # unicode times
    ([2, 3], 8, "2 ** 3", False),                      # no powers
    ([2, 3], -1, "-(3 - 2)", False),                   # no unary minus
    ([2, 3], 5, "__import__('os').system('true')", False),  # never executed
    ([2, 3], 5, "2.0 + 3", False),                     # integers only
    ([2, 3], 5, "(" * 300 + "2 + 3" + ")" * 300, False),    # too long to parse
    ([2, 3], 5, 5, False),                             # not text
    ([2, 3], 5, "", False),                            # empty
])
def test_verify(numbers, target, answer, ok):
    assert cd.verify({"numbers": numbers, "target": target}, answer) is ok


@pytest.mark.parametrize("values, key", [
    ({"n_numbers": 1}, "task.n_numbers"),
    ({"n_numbers": 7}, "task.n_numbers"),
    ({"numbers_min": 10, "numbers_max": 5}, "task.numbers_max"),
    ({"target_min": 0}, "task.target_min"),
    ({"heuristic": "best"}, "task.heuristic"),
    ({"max_steps": 0}, "task.max_steps"),
    ({"holdout_targets": [5]}, "task.holdout_targets[]"),  # below target_min: never sampled
    ({"search_limit": 0}, "task.search_limit"),
    ({"sb_backtrack_samples": -1}, "task.sb_backtrack_samples"),
    ({"sb_backtrack_ratio": 1.5}, "task.sb_backtrack_ratio"),  # a share
    ({"heuristic": "sum_heuristic"}, "task.heuristic"),         # their name; ours is sos_sum
])
def test_config_names_the_bad_key(values, key):
    with pytest.raises(ConfigError) as e:
        cd.Config(**values)
    assert e.value.key == key


@pytest.mark.parametrize("obj, message", [
    ([1, 2], "expected an object"),
    ({"numbers": [1, 2]}, "'target' must be a positive integer"),
    ({"numbers": [1], "target": 3}, "2 to 6"),
    ({"numbers": [1, "2"], "target": 3}, "positive integers"),
    ({"numbers": [1, 2], "target": 3, "extra": 1}, "unknown field"),
])
def test_parse_puzzle_names_what_is_wrong(obj, message):
    with pytest.raises(ValueError, match=message):
        cd.parse_puzzle(obj)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**9), n=st.integers(3, 5),
       heuristic=st.sampled_from(cd.HEURISTICS), paraphraser=st.sampled_from(["template", "none"]))
def test_solver_output_keeps_the_invariant_and_verifies(seed, n, heuristic, paraphraser):
    config = cd.Config(n_numbers=n, heuristic=heuristic, max_steps=60)
    rng = random.Random(seed)
    puzzle = cd.sample(config, rng)
    assert config.target_min <= puzzle["target"] <= config.target_max
    events = cd.solve(puzzle, config, rng)
    if events is None:  # out of budget: the pipeline draws another puzzle
        return
    check_events(events)
    assert sum(isinstance(e, Step) for e in events) <= config.max_steps
    w = words(cd, events, paraphraser, rng)
    direct = render(events, w, "direct")
    for style in ("backspace", "backtrack_token"):
        assert collapse(render(events, w, style)) == direct
    assert cd.verify(puzzle, final_answer(direct))
    assert direct.endswith(f"Answer: {events[-1].value}")


def test_sampler_only_yields_puzzles_with_a_solution():
    # With an unlimited budget the DFS is exhaustive, so "None" would mean "no solution".
    config = cd.Config(n_numbers=4, heuristic="random", max_steps=10**6)
    rng = random.Random("sampler")
    for _ in range(200):
        puzzle = cd.sample(config, rng)
        assert cd.solve(puzzle, config, rng) is not None, puzzle


def test_solver_reports_no_solution_and_out_of_budget():
    config = cd.Config(max_steps=10**6)
    assert cd.solve({"numbers": [1, 1, 1], "target": 97}, config, random.Random(0)) is None
    tight = cd.Config(max_steps=1, heuristic="closest")
    # 1,2,3,4 -> 97 is impossible; with a budget of one step the search stops at once
    assert cd.solve({"numbers": [1, 2, 3, 4], "target": 97}, tight, random.Random(0)) is None


def test_dead_ends_are_abandoned_and_then_the_solution_is_found():
    # "closest" first tries 25 * 4 = 100 (right on the target, with 1 and 2 still to use),
    # which fails, then backs out and finds another way.
    config = cd.Config(heuristic="closest", max_steps=50)
    events = cd.solve({"numbers": [25, 4, 1, 2], "target": 100}, config, random.Random(0))
    assert events is not None
    assert any(isinstance(e, Backtrack) for e in events)
    assert cd.verify({"numbers": [25, 4, 1, 2], "target": 100}, events[-1].value)


def test_answer_expressions_use_the_fewest_parentheses_that_keep_the_value():
    config = cd.Config(heuristic="random", max_steps=10**6)
    rng = random.Random("parens")
    for _ in range(300):
        puzzle = cd.sample(config, rng)
        answer = cd.solve(puzzle, config, rng)[-1].value
        assert cd.verify(puzzle, answer), (puzzle, answer)


def test_the_final_step_counts_against_the_budget():
    # found by hypothesis: a search could write max_steps steps and then the final one.
    rng = random.Random("budget")
    for max_steps in range(1, 8):
        config = cd.Config(n_numbers=4, heuristic="random", max_steps=max_steps)
        for _ in range(300):
            events = cd.solve(cd.sample(config, rng), config, rng)
            if events is not None:
                assert sum(isinstance(e, Step) for e in events) <= max_steps


# Digests of 300 sampled puzzles and their searches per heuristic and size, computed with the
# solver as it was before the dead_ends dial and the complete search were added (main at
# 3112027): the default config must keep every sampled trace byte for byte.
BEFORE_THE_DIAL = {
    ("closest", 3): "3ab6c11ef0b5ac7f", ("closest", 4): "d709be8c8d16ec29", ("closest", 5): "e37866f5f2c9fc33",
    ("sum", 3): "7f77e942e7284587", ("sum", 4): "568957ca422e68ed", ("sum", 5): "892f82b56a57fe41",
    ("random", 3): "297ec31d633ee434", ("random", 4): "11cde10df1c97f1b", ("random", 5): "251995a5feac44d2",
}


@pytest.mark.parametrize("heuristic, n_numbers", sorted(BEFORE_THE_DIAL))
def test_default_config_keeps_todays_sampled_traces(heuristic, n_numbers):
    import hashlib
    config = cd.Config(n_numbers=n_numbers, heuristic=heuristic)
    h = hashlib.sha256()
    for seed in range(300):  # the loop the pipeline runs: draw until the solver takes one
        rng = random.Random(f"identity/{seed}")
        while (events := cd.solve(puzzle := cd.sample(config, rng), config, rng)) is None:
            pass
        h.update(repr((puzzle, events)).encode())
    assert h.hexdigest()[:16] == BEFORE_THE_DIAL[heuristic, n_numbers]


@pytest.mark.parametrize("heuristic", list(cd.SOS_HEURISTICS))
def test_stream_of_search_heuristics_order_the_moves_as_theirs_do(heuristic):
    # their sum_heuristic / mult_heuristic score the numbers a move leaves; lower goes first
    config = cd.Config(heuristic=heuristic, max_steps=10**6)
    puzzle = {"numbers": [25, 4, 1, 2], "target": 100}
    first = cd.search(puzzle, config, random.Random(0), None)[0][0].data
    score = {"sos_sum": cd._sos_sum, "sos_mult": cd._sos_mult}[heuristic]
    moves = [(a, op, b, sorted([n for k, n in enumerate(puzzle["numbers"]) if k not in (i, j)] + [cd._apply(a, op, b)]))
             for i in range(4) for j in range(i + 1, 4) for a, op, b in cd._combine(puzzle["numbers"][i], puzzle["numbers"][j])]
    assert score(first["left"], 100) == min(score(left, 100) for *_, left in moves)
