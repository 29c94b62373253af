"""Arithmetic: the verifier, the parser, the sampler and the solver."""

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generate.paraphrase import words
from generate.validate import check, false_equations
from solvers import arithmetic as ar
from solvers.config import ConfigError
from solvers.trace import (BACKSPACE, BACKTRACK_TOKEN, STYLES, Answer, Backtrack, Step,
                           check_events, collapse, final_answer, render, stats)

DIV = {"kind": "division", "dividend": 7482, "divisor": 29}
LIN = {"kind": "linear", "equation": "3*x + 7 = 25"}
QUAD = {"kind": "quadratic", "equation": "x**2 - 2*x - 15 = 0"}
NEG = {"kind": "quadratic", "equation": "-x**2 + 2*x + 15 = 0"}  # opens downward: signs flip


@pytest.mark.parametrize("puzzle, answer, ok", [
    (DIV, 258, True),              # the Answer value itself
    (DIV, "258", True),            # the text after "Answer: "
    (DIV, " 258 \n", True),        # with the spaces a model leaves around it
    (DIV, "+258", True),           # an explicit sign is still a plain integer
    (DIV, 257, False),             # off by one
    (DIV, "258.0", False),         # integers only, no floats
    (DIV, "2*129", False),         # no expressions, even right ones
    (DIV, "7482 / 29", False),     # the question is not the answer
    (DIV, "x = 258", False),       # only the number
    (DIV, "２５８", False),          # ASCII digits only (\d would read these as 258)
    (DIV, "258" + " " * 100, False),  # longer than MAX_ANSWER_CHARS: not read at all
    (DIV, "9" * 40, False),        # too many digits
    (DIV, True, False),            # a bool is not an int here
    (DIV, 258.0, False),           # nor is a float
    (DIV, None, False),            # nor nothing
    (DIV, "", False),              # empty
    (LIN, 6, True),                # 3 * 6 + 7 = 25
    (LIN, "6", True),
    (LIN, "5", False),             # 22, not 25
    (QUAD, "5", True),             # 25 - 10 - 15 = 0
    (QUAD, -3, False),             # a root, but not the positive one the question asks for
    (QUAD, 3, False),              # 9 - 6 - 15 = -12
    (NEG, 5, True),                # -25 + 10 + 15 = 0
    ({"kind": "quadratic", "equation": "x**2 - 2*x = 15"}, 5, True),  # constant on the right
])
def test_verify(puzzle, answer, ok):
    assert ar.verify(puzzle, answer) is ok


@pytest.mark.parametrize("puzzle", [
    {"kind": "division"},                                    # fields missing
    {"kind": "division", "dividend": 0, "divisor": 0},       # 0 * anything = 0: never right
    {"kind": "division", "dividend": "7482", "divisor": 29},  # a string dividend
    {"kind": "linear", "equation": "__import__('os')"},      # not an equation, never evaluated
    {"kind": "linear", "equation": "x**2 = 4"},              # the wrong degree for its kind
    {"kind": "cubic", "equation": "x**3 = 8"},               # no such kind
    {},
])
def test_verify_never_raises_on_a_broken_puzzle(puzzle):
    assert ar.verify(puzzle, 2) is False


@pytest.mark.parametrize("values, key", [
    ({"kinds": []}, "task.kinds"),
    ({"kinds": "division"}, "task.kinds"),        # a list, not one name
    ({"kinds": ["cubic"]}, "task.kinds[]"),
    ({"divisor_min": 0}, "task.divisor_min"),
    ({"divisor_min": 50, "divisor_max": 10}, "task.divisor_max"),
    ({"quotient_max": 5}, "task.quotient_max"),  # below quotient_min = 10
    ({"root_min": 0}, "task.root_min"),          # answers are positive
    ({"root_max": 0}, "task.root_max"),
    ({"slope_max": 1}, "task.slope_max"),        # below slope_min = 2
    ({"constant_max": 0}, "task.constant_max"),  # b is nonzero: the range would be empty
    ({"lead_max": 0}, "task.lead_max"),
    ({"scan_stride": 0}, "task.scan_stride"),
    ({"heuristic": "best"}, "task.heuristic"),
    ({"max_steps": 0}, "task.max_steps"),
    ({"max_steps": "20"}, "task.max_steps"),
])
def test_config_names_the_bad_key(values, key):
    with pytest.raises(ConfigError) as e:
        ar.Config(**values)
    assert e.value.key == key


@pytest.mark.parametrize("obj, message", [
    ([DIV], "expected an object"),
    ({"kind": "cubic"}, "'kind' must be one of"),
    ({**DIV, "quotient": 258}, "unknown field"),
    ({**LIN, "dividend": 3}, "unknown field"),
    ({"kind": "division", "dividend": 7482}, "'divisor' must be a positive integer"),
    ({"kind": "division", "dividend": 7482, "divisor": 0}, "'divisor' must be a positive integer"),
    ({"kind": "division", "dividend": 7483, "divisor": 29}, "'dividend' must be a positive multiple"),
    ({"kind": "division", "dividend": 7482.0, "divisor": 29}, "'dividend' must be a positive multiple"),
    ({"kind": "linear"}, "'equation' must be a string"),
    ({"kind": "linear", "equation": "3*x + 7"}, "'equation' must be one line like"),  # no '='
    ({"kind": "linear", "equation": "3*x = 7 = 1"}, "'equation' must be one line like"),
    ({"kind": "linear", "equation": "3*y + 7 = 25"}, "'equation' must be one line like"),  # only x
    ({"kind": "linear", "equation": "x/2 = 3"}, "'equation' must be one line like"),  # no division
    ({"kind": "linear", "equation": "open('f') = 1"}, "'equation' must be one line like"),
    ({"kind": "linear", "equation": "x" + " + 1" * 40 + " = 50"}, "at most 120 characters"),
    ({"kind": "linear", "equation": "2**9**9*x = 1"}, "one-digit power"),  # a huge number
    ({"kind": "quadratic", "equation": "((x**2)**2)**2 = 1"}, "one-digit power"),
    ({"kind": "quadratic", "equation": "x**(1+1) = 4"}, "one-digit power"),
    ({"kind": "linear", "equation": "3*x + = 25"}, "not an equation in x"),
    ({"kind": "linear", "equation": "x**2 = 4"}, "'equation' has degree 2, but 'kind' linear"),
    ({"kind": "quadratic", "equation": "x + 1 = 3"}, "'equation' has degree 1, but 'kind' quadratic"),
    ({"kind": "linear", "equation": "2*x = 5"}, "exactly one positive solution"),  # 5/2
    ({"kind": "linear", "equation": "2*x + 10 = 0"}, "exactly one positive solution"),  # -5
    ({"kind": "quadratic", "equation": "x**2 - 5*x + 6 = 0"}, "exactly one positive solution"),  # 2 and 3
    ({"kind": "quadratic", "equation": "x**2 - 10*x + 25 = 0"}, "exactly one positive solution"),  # 5 twice
    ({"kind": "quadratic", "equation": "x**2 - 2 = 0"}, "exactly one positive solution"),  # irrational
    ({"kind": "quadratic", "equation": "x**2 + 1 = 0"}, "exactly one positive solution"),  # complex
])
def test_parse_puzzle_names_what_is_wrong(obj, message):
    with pytest.raises(ValueError, match=message):
        ar.parse_puzzle(obj)


@pytest.mark.parametrize("equation, kind, canonical", [
    ("3*x + 7 = 25", "linear", "3*x + 7 = 25"),
    ("3x+7=25", "linear", "3*x + 7 = 25"),              # implicit multiplication, no spaces
    ("25 = 3*x + 7", "linear", "3*x + 7 = 25"),         # the side with x goes left
    ("2(x + 1) = 12", "linear", "2*x + 2 = 12"),
    ("x^2 - 2x - 15 = 0", "quadratic", "x**2 - 2*x - 15 = 0"),  # human notation
    ("(x - 5)(x + 3) = 0", "quadratic", "x**2 - 2*x - 15 = 0"),
    ("x**2 = 2*x + 15", "quadratic", "x**2 - 2*x = 15"),  # x terms left, constants stay put
])
def test_parse_puzzle_canonical_form(equation, kind, canonical):
    assert ar.parse_puzzle({"kind": kind, "equation": equation}) == {"kind": kind, "equation": canonical}
    assert ar.puzzle_key({"kind": kind, "equation": equation}) == f"{kind}:{canonical}"


def test_hostile_equations_are_refused_quickly():
    t = time.perf_counter()
    for text in ("9**9**9**9 = x", "(((((9**9)**9)**9)**9)**9) = x", "9" * 119 + "=x", "x" * 60 + "=1"):
        with pytest.raises(ValueError):
            ar.parse_puzzle({"kind": "linear", "equation": text})
    assert time.perf_counter() - t < 2


def test_parse_puzzle_accepts_what_the_sampler_makes():
    rng = random.Random("parse")
    config = ar.Config(lead_max=3)
    for _ in range(300):
        puzzle = ar.sample(config, rng)
        assert ar.parse_puzzle(puzzle) == puzzle


def test_questions_are_one_line_in_human_notation():
    assert ar.question(DIV) == "What is 7482 ÷ 29?"
    assert ar.question(LIN) == "Solve 3x + 7 = 25 for x."
    assert ar.question(QUAD) == "Find the positive solution of x^2 - 2x - 15 = 0."
    assert ar.question(NEG) == "Find the positive solution of -x^2 + 2x + 15 = 0."
    assert ar.question({"kind": "linear", "equation": "x - 4 = 1"}) == "Solve x - 4 = 1 for x."


def record_for(puzzle, events, text, style="backspace"):
    """A record built the way generate/pipeline.py's Items.__call__ builds it."""
    return {"Question": ar.question(puzzle), "Answer": events[-1].value, "Reasoning": text,
            "id": "arithmetic/train/0/0", "task": "arithmetic", "split": "train", "style": style,
            "source": "synthetic", "puzzle": puzzle, "stats": stats(events, text)}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**9), kind=st.sampled_from(ar.KINDS), heuristic=st.sampled_from(ar.HEURISTICS),
       paraphraser=st.sampled_from(["template", "none"]), notes=st.booleans())
def test_solver_output_keeps_the_invariant_and_verifies(seed, kind, heuristic, paraphraser, notes):
    config = ar.Config(kinds=[kind], heuristic=heuristic, max_steps=60)
    rng = random.Random(seed)
    puzzle = ar.sample(config, rng)
    question = ar.question(puzzle)
    assert "\n" not in question and BACKSPACE not in question and BACKTRACK_TOKEN not in question
    events = ar.solve(puzzle, config, rng)
    assert events is not None  # 60 is above the most any heuristic needs (division scan: 27)
    check_events(events)
    steps = [e for e in events if isinstance(e, Step)]
    assert [e.data["final"] for e in steps].count(True) == 1 and steps[-1].data["final"]
    assert type(events[-1].value) is int
    for style in STYLES:
        w = words(ar, events, paraphraser, rng, style=style, notes=notes)
        text = render(events, w, style, notes=notes)
        direct = render(events, w, "direct", notes=notes)
        assert collapse(text) == direct or style == "search"
        assert false_equations(text.replace(BACKSPACE, "")) == []  # erased words included
        assert check(record_for(puzzle, events, text, style), ar, 10**6) is None
        assert ar.verify(puzzle, final_answer(direct))
        assert direct.endswith(f"Answer: {events[-1].value}")


def test_default_config_fits_the_length_budget():
    config = ar.Config()
    rng = random.Random("length")
    lengths, abandoned = [], 0
    for _ in range(300):
        puzzle = ar.sample(config, rng)
        events = ar.solve(puzzle, config, rng)
        assert events is not None  # estimate needs at most 15 steps (all default puzzles)
        text = render(events, words(ar, events, "template", rng), "backspace")
        assert check(record_for(puzzle, events, text), ar, 2048) is None
        lengths.append(len(text))
        abandoned += any(isinstance(e, Backtrack) for e in events)
    lengths.sort()
    assert lengths[int(0.95 * len(lengths))] < 1500
    assert abandoned > 0.5 * len(lengths)  # measured: about 70%


def test_long_division_example():
    # 74 ÷ 29: the leading digits say 7 ÷ 2 = 3, one too many; 168 ÷ 29: 16 ÷ 2 = 8, three
    # too many; 232 ÷ 29: 23 ÷ 2 = 11, capped at 9, one too many.
    events = ar.solve(DIV, ar.Config(heuristic="estimate"), random.Random(0))
    w = words(ar, events, "none", random.Random(0))
    assert render(events, w, "direct") == (
        "74 ÷ 29: try 2. 2 × 29 = 58, 74 - 58 = 16. Bring down 8: 168.\n"
        "168 ÷ 29: try 5. 5 × 29 = 145, 168 - 145 = 23. Bring down 2: 232.\n"
        "232 ÷ 29: try 8. 8 × 29 = 232, 232 - 232 = 0. So 7482 ÷ 29 = 258.\n"
        "Answer: 258")
    assert [e.data["digit"] for e in events if isinstance(e, Step)] == [3, 2, 8, 7, 6, 5, 9, 8]
    assert w[0] == "74 ÷ 29: try 3. 3 × 29 = 87, more than 74.\n"
    assert w[1] == "Wrong guess. Back to 74 ÷ 29.\n"
    assert events[-1] == Answer(258)


def test_a_zero_digit_is_written_without_guessing():
    # 5887 = 29 × 203: after 58 the partial 8 is below 29, so the digit is 0 at once.
    for heuristic in ar.HEURISTICS:
        events = ar.solve({"kind": "division", "dividend": 5887, "divisor": 29},
                          ar.Config(heuristic=heuristic), random.Random(0))
        zero = [e.data for e in events if isinstance(e, Step) and e.data["status"] == "zero"]
        assert len(zero) == 1 and zero[0]["partial"] == 8 and events[-1] == Answer(203)
    words_ = words(ar, events, "none", random.Random(0))
    assert "8 ÷ 29: 8 is less than 29, so 0. Bring down 7: 87.\n" in words_


def test_estimate_and_scan_never_guess_a_digit_too_small():
    # The leading-digit estimate is never below the true digit, and scan counts down from 9,
    # so neither ever writes a "too small" line; bisect and random do.
    rng = random.Random("under")
    statuses = {h: set() for h in ar.HEURISTICS}
    for heuristic in ar.HEURISTICS:
        config = ar.Config(kinds=["division"], heuristic=heuristic, max_steps=60)
        for _ in range(200):
            for e in ar.solve(ar.sample(config, rng), config, rng):
                if isinstance(e, Step):
                    statuses[heuristic].add(e.data["status"])
    assert "under" not in statuses["estimate"] and "under" not in statuses["scan"]
    assert "under" in statuses["bisect"] and "under" in statuses["random"]


def test_linear_estimate_ignores_the_constant_then_corrects_exactly():
    # 25 / 3 -> 8 gives 31; the line through (0, 7 - 25) and (8, 31 - 25) crosses at 6.
    events = ar.solve(LIN, ar.Config(heuristic="estimate"), random.Random(0))
    w = words(ar, events, "none", random.Random(0))
    assert w[0] == "Try x = 8: 3 × 8 = 24, 24 + 7 = 31, not 25, too big.\n"
    assert render(events, w, "direct") == "Try x = 6: 3 × 6 = 18, 18 + 7 = 25. It works.\nAnswer: 6"


def test_bisection_doubles_then_halves_and_says_the_bracket():
    events = ar.solve(QUAD, ar.Config(heuristic="bisect"), random.Random(0))
    assert [e.data["x"] for e in events if isinstance(e, Step)] == [2, 4, 8, 6, 5]
    w = words(ar, events, "none", random.Random(0))
    assert w[2] == "Try x = 4: 4 × 4 = 16, 2 × 4 = 8, 16 - 8 = 8, 8 - 15 = -7, not 0, too small.\n"
    assert render(events, w, "direct") == (
        "x is between 4 and 6. Try x = 5: 5 × 5 = 25, 2 × 5 = 10, 25 - 10 = 15, 15 - 15 = 0. It works.\n"
        "Answer: 5")


def test_every_heuristic_reads_too_big_from_the_sign_when_the_parabola_opens_down():
    for heuristic in ar.HEURISTICS:
        for seed in range(5):
            events = ar.solve(NEG, ar.Config(heuristic=heuristic), random.Random(seed))
            assert events[-1] == Answer(5)
            for e in events:
                if isinstance(e, Step) and not e.data["final"]:
                    assert e.data["too_big"] == (e.data["x"] > 5)


def test_scan_with_stride_one_tries_every_x():
    config = ar.Config(heuristic="scan", scan_stride=1)
    events = ar.solve({"kind": "linear", "equation": "2*x + 1 = 15"}, config, random.Random(0))
    assert [e.data["x"] for e in events if isinstance(e, Step)] == [1, 2, 3, 4, 5, 6, 7]
    config = ar.Config(heuristic="scan")  # stride 5: 5, 10 (too big), then 6, 7
    events = ar.solve({"kind": "linear", "equation": "2*x + 1 = 15"}, config, random.Random(0))
    assert [e.data["x"] for e in events if isinstance(e, Step)] == [5, 10, 6, 7]


def test_the_budget_holds_for_every_heuristic():
    rng = random.Random("budget")
    for max_steps in (1, 2, 3, 5, 8):
        for heuristic in ar.HEURISTICS:
            config = ar.Config(max_steps=max_steps, heuristic=heuristic)
            for _ in range(20):
                events = ar.solve(ar.sample(config, rng), config, rng)
                if events is not None:
                    assert sum(isinstance(e, Step) for e in events) <= max_steps
    # 7482 ÷ 29 by estimate writes 8 steps: 7 is not enough, 8 is
    assert ar.solve(DIV, ar.Config(max_steps=7), random.Random(0)) is None
    assert ar.solve(DIV, ar.Config(max_steps=8), random.Random(0)) is not None


def test_sampler_is_deterministic_and_keeps_its_promises():
    config = ar.Config()
    a = [ar.sample(config, random.Random(f"det{i}")) for i in range(60)]
    b = [ar.sample(config, random.Random(f"det{i}")) for i in range(60)]
    assert a == b
    assert {p["kind"] for p in a} == set(ar.KINDS)
    for puzzle in a:
        if puzzle["kind"] == "division":
            q, r = divmod(puzzle["dividend"], puzzle["divisor"])
            assert r == 0 and config.quotient_min <= q <= config.quotient_max
        else:
            _, _, root, _ = ar._parse_equation(puzzle["kind"], puzzle["equation"])
            assert config.root_min <= root <= config.root_max


def test_every_phrase_is_one_line_and_true():
    rng = random.Random("phrases")
    seen = set()
    for heuristic in ar.HEURISTICS:
        config = ar.Config(heuristic=heuristic, max_steps=60)
        for _ in range(60):
            puzzle = ar.sample(config, rng)
            events = ar.solve(puzzle, config, rng)
            live = []
            for e in events:
                if isinstance(e, Step):
                    live.append(e.data)
                    phrases = ar.step_phrases(e.data)
                    lines = [p.format(**ar.step_slots(e.data)) for p in phrases]
                    seen.add(phrases)
                elif isinstance(e, Backtrack):
                    failed = live[-e.k]
                    del live[-e.k:]
                    lines = [p.format(**ar.back_slots(e.state)) for p in ar.BACK_PHRASES]
                    lines += [p.format(**ar.note_slots(failed, e.state)) for p in ar.NOTE_PHRASES]
                else:
                    continue
                for line in lines:
                    assert line.endswith("\n") and line.count("\n") == 1
                    assert BACKSPACE not in line and BACKTRACK_TOKEN not in line
                    assert false_equations(line) == [], line
    assert len(seen) == 6  # over, under, fits, zero, wrong x, right x
    note = ar.NOTE_PHRASES[0].format(**ar.note_slots(
        {"kind": "quadratic", "x": 4, "value": -7, "c": 0, "parts": [], "final": False, "too_big": False},
        {"kind": "quadratic", "lo": 4, "hi": None}))
    assert note == "(x = 4 was too small: it gives -7, not 0.)\n"
