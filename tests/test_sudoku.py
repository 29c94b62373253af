"""Sudoku: the verifier, the sampler and the solver."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generate import validate
from generate.paraphrase import words
from solvers import sudoku as sd
from solvers.config import ConfigError
from solvers.trace import (BACKSPACE, Backtrack, Step, check_events, collapse, final_answer,
                           render, stats)

P4 = {"size": 4, "grid": "...4/..31/...2/.1.."}  # unique solution 1324/4231/3412/2143
S4 = "1324/4231/3412/2143"
P9 = {"size": 9, "grid": "53..7..../6..195.../.98....6./8...6...3/4..8.3..1/7...2...6/"
                         ".6....28./...419..5/....8..79"}
S9 = "534678912/672195348/198342567/859761423/426853791/713924856/961537284/287419635/345286179"


@pytest.mark.parametrize("puzzle, answer, ok", [
    (P4, S4, True),                                   # the solution
    (P4, f"  {S4} \n", True),                         # surrounding spaces, as a model writes them
    (P4, "1234/3412/2143/4321", False),               # a valid grid that does not keep the givens
    (P4, "1324/4231/3412/214", False),                # a row too short
    (P4, "1324/4231/3412/2143/1234", False),          # a row too many
    (P4, "1324/4231/3412/2153", False),               # digit 5 in a 4x4 grid
    (P4, "1324/4231/3412/21.3", False),               # a blank left
    (P4, "1324/4231/3412/2134", False),               # a column repeats (c3 holds 3 twice)
    (P4, "1324 4231 3412 2143", False),               # rows not separated by "/"
    (P4, "1324/4231/3412/2143/", False),              # trailing separator: an empty fifth row
    (P4, "1 3 2 4/4231/3412/2143", False),            # spaces inside a row
    (P4, 1324423134122143, False),                    # not text
    (P4, None, False),                                # nothing
    (P4, "", False),                                  # empty
    (P4, S4 * 1000, False),                           # huge: capped before parsing
    (P4, "١٣٢٤/٤٢٣١/٣٤١٢/٢١٤٣", False),               # Arabic-Indic digits are not 1-4
    (P9, S9, True),                                   # the 9x9 classic
    (P9, S9.replace("534678912", "534678921"), False),  # two cells swapped: columns repeat
    ({"size": 4, "grid": "12../..../..../...."}, "1234/3412/2143/4321", True),  # any valid completion
    ({"size": 4, "grid": "1234/3412/2143/4321"}, "1234/3412/2143/4321", True),  # nothing blank
    # rows and columns each a permutation of 1-4, givens kept, but the top-left box holds 1, 2, 2, 1
    ({"size": 4, "grid": "12../..../..../...."}, "1234/2143/3412/4321", False),
])
def test_verify(puzzle, answer, ok):
    assert sd.verify(puzzle, answer) is ok


@pytest.mark.parametrize("values, key", [
    ({"size": 5}, "task.size"),
    ({"size": "4"}, "task.size"),                     # a string is not a size
    ({"blanks": 0}, "task.blanks"),
    ({"blanks": 13}, "task.blanks"),                  # 4x4 needs 4 givens for one solution
    ({"size": 9, "blanks": 59}, "task.blanks"),       # beyond what greedy removal reaches
    ({"heuristic": "best"}, "task.heuristic"),
    ({"max_steps": 0}, "task.max_steps"),
])
def test_config_names_the_bad_key(values, key):
    with pytest.raises(ConfigError) as e:
        sd.Config(**values)
    assert e.value.key == key


@pytest.mark.parametrize("obj, message", [
    ([1, 2], "expected an object"),
    ({"grid": "...4/..31/...2/.1.."}, "'size' must be 4 or 9"),
    ({"size": 6, "grid": "...4/..31/...2/.1.."}, "'size' must be 4 or 9"),
    ({"size": 4}, "'grid' must be a string"),
    ({"size": 4, "grid": "...4/..31/...2"}, "'grid' must be 4 rows"),
    ({"size": 4, "grid": "...4/..31/...2/.5.."}, "'grid' must be 4 rows"),   # 5 in a 4x4 grid
    ({"size": 4, "grid": "...4/..31/...2/01.."}, "'grid' must be 4 rows"),   # 0 is not a blank
    ({"size": 4, "grid": "..44/..31/...2/.1.."}, "'grid' repeats a digit"),
    ({"size": 4, "grid": "...4/..31/...2/.1..", "extra": 1}, "unknown field"),
])
def test_parse_puzzle_names_what_is_wrong(obj, message):
    with pytest.raises(ValueError, match=message):
        sd.parse_puzzle(obj)


def test_parse_puzzle_returns_a_clean_puzzle():
    assert sd.parse_puzzle(dict(P4)) == P4
    assert sd.parse_puzzle(dict(P9)) == P9


def _record(puzzle, events, text):
    """A record built the way generate/pipeline.py's Items.__call__ builds it."""
    return {"Question": sd.question(puzzle), "Answer": events[-1].value, "Reasoning": text,
            "puzzle": puzzle, "split": "train", "stats": stats(events, text)}


def _check_trace(puzzle, config, events, rng, paraphraser):
    check_events(events)
    assert sum(isinstance(e, Step) for e in events) <= config.max_steps
    assert [e.data.get("final") for e in events if isinstance(e, Step)][-1] is True
    w = words(sd, events, paraphraser, rng)
    assert all(t.endswith("\n") and t.count("\n") == 1 for t, e in zip(w, events) if isinstance(e, Step))
    direct = render(events, w, "direct")
    for style in ("backspace", "backtrack_token"):
        assert collapse(render(events, w, style)) == direct
    assert sd.verify(puzzle, final_answer(direct))
    assert direct.endswith(f"Answer: {events[-1].value}")
    for style in ("backspace", "backtrack_token", "search", "direct"):
        text = render(events, w, style)
        assert validate.false_equations(text) == []  # erased or not, no line reads as false arithmetic
        assert validate.check(_record(puzzle, events, text), sd, 2048) is None, style


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**9), blanks=st.integers(1, 12),
       heuristic=st.sampled_from(sd.HEURISTICS), paraphraser=st.sampled_from(["template", "none"]))
def test_solver_output_keeps_the_invariant_and_verifies(seed, blanks, heuristic, paraphraser):
    config = sd.Config(blanks=blanks, heuristic=heuristic)
    rng = random.Random(seed)
    puzzle = sd.sample(config, rng)
    assert sd.parse_puzzle(dict(puzzle)) == puzzle
    assert puzzle["grid"].count(".") == blanks
    assert "\n" not in sd.question(puzzle) and BACKSPACE not in sd.question(puzzle)
    events = sd.solve(puzzle, config, rng)
    if events is None:  # out of budget: the pipeline draws another puzzle
        return
    _check_trace(puzzle, config, events, rng, paraphraser)


def test_9x9_puzzles_are_unique_and_their_traces_valid():
    rng = random.Random("nine")
    for heuristic in sd.HEURISTICS:
        config = sd.Config(size=9, blanks=25, heuristic=heuristic, max_steps=60)
        for _ in range(3):
            puzzle = sd.sample(config, rng)
            assert sd._count(sd._from_text(puzzle["grid"], 9), 9, 2)[0] == 1
            events = sd.solve(puzzle, config, rng)
            if events is not None:
                _check_trace(puzzle, config, events, rng, "template")


def test_sampled_puzzles_have_exactly_one_solution():
    config = sd.Config(blanks=12)
    rng = random.Random("unique")
    for _ in range(100):
        cells = sd._from_text(sd.sample(config, rng)["grid"], 4)
        assert sd._count(cells, 4, 3)[0] == 1


def test_sampler_is_deterministic_given_the_rng():
    config = sd.Config()
    assert ([sd.sample(config, random.Random(7)) for _ in range(3)]
            == [sd.sample(config, random.Random(7)) for _ in range(3)])


def test_default_config_backtracks_in_many_traces_and_fits_the_budget():
    # Measured over 1000 puzzles: 73% abandon a guess, p95 858 characters (template).
    config = sd.Config()
    rng = random.Random("default")
    lengths, abandoned, solved = [], 0, 0
    while solved < 200:
        puzzle = sd.sample(config, rng)
        events = sd.solve(puzzle, config, rng)
        if events is None:
            continue
        solved += 1
        text = render(events, words(sd, events, "template", rng), "backspace")
        lengths.append(len(text))
        abandoned += any(isinstance(e, Backtrack) for e in events)
    lengths.sort()
    assert abandoned / solved > 0.5
    assert lengths[int(0.95 * solved)] < 1500 and lengths[-1] <= 2048


def test_a_failed_guess_is_abandoned_with_all_it_led_to():
    # the first sampled puzzle whose "order" search abandons a guess
    config = sd.Config(heuristic="order", max_steps=100)
    rng = random.Random("abandon")
    for _ in range(50):
        puzzle = sd.sample(config, rng)
        events = sd.solve(puzzle, config, rng)
        backs = [i for i, e in enumerate(events) if isinstance(e, Backtrack)]
        if backs:
            break
    i = backs[0]
    assert events[i - 1].data["kind"] == "stuck"  # every dead end is seen before it is erased
    # the first abandoned step is a guess at the cell the search is back to
    live = []
    for e in events[:i]:
        if isinstance(e, Step):
            live.append(e.data)
        elif isinstance(e, Backtrack):
            del live[len(live) - e.k:]
    first = live[len(live) - events[i].k]
    assert first["kind"] == "guess" and first["cell"] == events[i].state["cell"]
    note = sd.NOTE_PHRASES[0].format(**sd.note_slots(first, events[i].state))
    assert note == f"({first['cell']} = {first['value']} fails.)\n"


def test_solver_reports_no_solution_and_out_of_budget():
    config = sd.Config(max_steps=10**6)
    # r1c1 has no option: 1 and 2 are in its row, 3 and 4 in its column
    assert sd.solve({"size": 4, "grid": ".2.1/3.../..../4..."}, sd.Config(), random.Random(0)) is None
    assert sd.solve({"size": 4, "grid": "1234/3412/2143/4321"}, config, random.Random(0)) is None
    assert sd.solve(P4, sd.Config(max_steps=3), random.Random(0)) is None  # 11 blanks, 3 steps


def test_the_budget_counts_every_step_written():
    rng = random.Random("budget")
    for max_steps in range(1, 16):
        config = sd.Config(heuristic="random", max_steps=max_steps)
        for _ in range(40):
            events = sd.solve(sd.sample(config, rng), config, rng)
            if events is not None:
                assert sum(isinstance(e, Step) for e in events) <= max_steps


def test_phrases_are_one_line_and_never_false_arithmetic():
    data = [{"kind": "single", "cell": "r2c3", "value": 4, "final": False},
            {"kind": "single", "cell": "r4c4", "value": 1, "final": True},
            {"kind": "guess", "cell": "r1c2", "value": 3, "options": [3, 4], "final": False},
            {"kind": "stuck", "cell": "r3c1", "final": False}]
    for d in data:
        for phrase in sd.step_phrases(d):
            line = phrase.format(**sd.step_slots(d))
            assert line.endswith("\n") and line.count("\n") == 1 and BACKSPACE not in line
            assert "<backtrack>" not in line and validate.false_equations(line) == []
    state = {"cell": "r1c2", "grid": "12.4/..../..../...."}
    for phrase in sd.BACK_PHRASES:
        assert phrase.format(**sd.back_slots(state)).count("\n") == 1
    for phrase in sd.NOTE_PHRASES:
        line = phrase.format(**sd.note_slots(data[2], state))
        assert line.endswith("\n") and line.count("\n") == 1 and validate.false_equations(line) == []


def test_puzzle_key_is_the_grid():
    assert sd.puzzle_key(P4) == "...4/..31/...2/.1.."
    assert not sd.is_heldout(P4, sd.Config())
