"""Graph search: the verifier, the sampler and the solver."""

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generate.paraphrase import words
from generate.validate import check, false_equations
from solvers import graph as gr
from solvers.config import ConfigError
from solvers.trace import (BACKSPACE, BACKTRACK_TOKEN, STYLES, Answer, Backtrack, Step,
                           check_events, collapse, final_answer, render, stats)

# A hand-made maze on a 3x3 grid (not every cell used): from a1 the dead corridor
# a1-a2-a3 ties with a1-b1 on Manhattan distance to c2 and comes first alphabetically.
#   a3
#   a2   b2 - c2
#   a1 - b1 - c1        plus a1-a2, a2-a3, b1-b2
MAZE = {"kind": "maze", "nodes": ["a1", "a2", "a3", "b1", "b2", "c1", "c2"],
        "edges": [["a1", "a2"], ["a2", "a3"], ["a1", "b1"], ["b1", "c1"], ["b1", "b2"], ["b2", "c2"]],
        "start": "a1", "goal": "c2"}
GRAPH = {"kind": "random", "nodes": ["A", "B", "C", "D"],
         "edges": [["A", "B"], ["B", "C"], ["C", "D"], ["A", "C"]], "start": "A", "goal": "D"}


@pytest.mark.parametrize("puzzle, answer, ok", [
    (MAZE, "a1-b1-b2-c2", True),            # the plain case
    (MAZE, "  a1 - b1 - b2 - c2 \n", True),  # spaces around the answer and the dashes
    (MAZE, "a1-b1-c1-c2", False),           # c1-c2 is a wall, not a corridor
    (MAZE, "a1-b1-b2", False),              # stops short of the goal
    (MAZE, "a2-a1-b1-b2-c2", False),        # starts in the wrong place
    (MAZE, "c2-b2-b1-a1", False),           # the path backwards
    (MAZE, "a1-a2-a1-b1-b2-c2", False),     # walks into a dead end and back: not simple
    (MAZE, "A1-B1-B2-C2", False),           # names are exact
    (MAZE, "a1--b1-b2-c2", False),          # an empty name between dashes
    (MAZE, "a1 b1 b2 c2", False),           # not joined by dashes
    (MAZE, "a1-b1-b2-c2" + "-x" * 5000, False),  # too long to read
    (MAZE, "", False),                      # empty
    (MAZE, 5, False),                       # not text
    (MAZE, ["a1", "b1", "b2", "c2"], False),  # a list is not the written answer
    (GRAPH, "A-C-D", True),                 # the short way
    (GRAPH, "A-B-C-D", True),               # a longer simple path is right too
    (GRAPH, "A-B-D", False),                # no edge B-D
    (GRAPH, "A-D", False),                  # no edge A-D
    (GRAPH, "A-B-C-A-C-D", False),          # repeats nodes (and A-C twice)
])
def test_verify(puzzle, answer, ok):
    assert gr.verify(puzzle, answer) is ok


def test_verify_never_raises_on_a_broken_puzzle():
    assert gr.verify({"start": "A"}, "A-B") is False
    assert gr.verify({"start": "A", "goal": "B", "edges": [[1, [2]]]}, "A-B") is False


@pytest.mark.parametrize("values, key", [
    ({"kind": "grid"}, "task.kind"),
    ({"rows": 1}, "task.rows"),
    ({"rows": 10}, "task.rows"),            # row numbers stay one digit
    ({"cols": 27}, "task.cols"),            # letters a..z
    ({"nodes": 27}, "task.nodes"),
    ({"nodes": 10, "edges": 8}, "task.edges"),   # fewer than a tree: never connected
    ({"nodes": 10, "edges": 46}, "task.edges"),  # more than the complete graph
    ({"min_distance": 0}, "task.min_distance"),
    ({"rows": 2, "cols": 2, "min_distance": 3}, "task.min_distance"),  # corners are 2 apart
    ({"kind": "random", "nodes": 4, "edges": 3, "min_distance": 4}, "task.min_distance"),
    ({"heuristic": "best"}, "task.heuristic"),
    ({"max_steps": 0}, "task.max_steps"),
    ({"max_steps": "30"}, "task.max_steps"),
])
def test_config_names_the_bad_key(values, key):
    with pytest.raises(ConfigError) as e:
        gr.Config(**values)
    assert e.value.key == key


@pytest.mark.parametrize("change, message", [
    (None, "expected an object"),
    ({"colour": "red"}, "unknown field"),
    ({"kind": "tree"}, "'kind' must be one of"),
    ({"nodes": "a1 a2"}, "'nodes' must be a list"),
    ({"nodes": ["a1", "a10"]}, "'nodes' must be names"),  # maze rows are one digit
    ({"nodes": ["a1", "a1", "b1"]}, "'nodes' has a repeated name"),
    ({"edges": [["a1"]]}, "'edges' must be a list of"),
    ({"edges": [["a1", "z9"]]}, "'edges' names a node not in 'nodes'"),
    ({"edges": [["a1", "a2"], ["a2", "a1"]]}, "'edges' has a loop or a repeated edge"),
    ({"edges": [["a1", "b2"]]}, "not side by side"),  # a diagonal is no corridor
    ({"start": "z1"}, "'start' must be one of the nodes"),
    ({"goal": None}, "'goal' must be one of the nodes"),
    ({"goal": "a1"}, "'goal' must differ from 'start'"),
])
def test_parse_puzzle_names_what_is_wrong(change, message):
    obj = [MAZE] if change is None else {**MAZE, **change}
    with pytest.raises(ValueError, match=message):
        gr.parse_puzzle(obj)


def test_parse_puzzle_accepts_what_the_sampler_makes():
    rng = random.Random("parse")
    for kind in gr.KINDS:
        for _ in range(50):
            puzzle = gr.sample(gr.Config(kind=kind), rng)
            assert gr.parse_puzzle(puzzle) == puzzle


def record_for(puzzle, events, text):
    """A record built the way generate/pipeline.py's Items.__call__ builds it."""
    return {"Question": gr.question(puzzle), "Answer": events[-1].value, "Reasoning": text,
            "id": "graph/train/0/0", "task": "graph", "split": "train", "style": "backspace",
            "source": "synthetic", "puzzle": puzzle, "stats": stats(events, text)}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**9), kind=st.sampled_from(gr.KINDS),
       heuristic=st.sampled_from(gr.HEURISTICS), paraphraser=st.sampled_from(["template", "none"]))
def test_solver_output_keeps_the_invariant_and_verifies(seed, kind, heuristic, paraphraser):
    config = gr.Config(kind=kind, heuristic=heuristic)
    rng = random.Random(seed)
    puzzle = gr.sample(config, rng)
    question = gr.question(puzzle)
    assert "\n" not in question and BACKSPACE not in question and BACKTRACK_TOKEN not in question
    events = gr.solve(puzzle, config, rng)
    assert events is not None  # the default budget is above nodes - 1, the most a DFS writes
    check_events(events)
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) <= min(config.max_steps, len(puzzle["nodes"]) - 1)
    assert [e.data["final"] for e in steps].count(True) == 1 and steps[-1].data["final"]
    w = words(gr, events, paraphraser, rng)
    direct = render(events, w, "direct")
    for style in STYLES:
        text = render(events, w, style)
        assert collapse(text) == direct or style == "search"
        assert false_equations(text.replace(BACKSPACE, "")) == []  # erased words included
        assert check(record_for(puzzle, events, text), gr, 2048) is None
    assert gr.verify(puzzle, final_answer(direct))
    assert direct.endswith(f"Answer: {events[-1].value}")


def test_a_dead_corridor_is_abandoned_in_one_backtrack():
    events = gr.solve(MAZE, gr.Config(heuristic="closest"), random.Random(0))
    moves = [(e.data["at"], e.data["to"]) for e in events if isinstance(e, Step)]
    assert moves == [("a1", "a2"), ("a2", "a3"), ("a1", "b1"), ("b1", "b2"), ("b2", "c2")]
    assert events[2] == Backtrack(2, {"node": "a1"})  # two steps of corridor, back at the fork
    assert events[-1] == Answer("a1-b1-b2-c2")
    w = words(gr, events, "none", random.Random(0))
    assert render(events, w, "direct") == ("From a1 go to b1.\nFrom b1 go to b2.\n"
                                           "From b2 go to c2. That is the goal.\nAnswer: a1-b1-b2-c2")
    assert w[2] == "Dead end. Back to a1.\n"


def test_the_goal_is_taken_first_whatever_the_order():
    # From A the goal B is a neighbour; "order" would otherwise try A-... alphabetically.
    puzzle = {"kind": "random", "nodes": ["A", "B", "C"], "edges": [["A", "C"], ["A", "B"]],
              "start": "C", "goal": "B"}
    for heuristic in gr.HEURISTICS:
        events = gr.solve(puzzle, gr.Config(heuristic=heuristic), random.Random(1))
        assert events[-1].value == "C-A-B" and len(events) == 3


def test_random_graph_closest_looks_one_edge_ahead():
    # From A: B and C; only C touches the goal D, so C comes first although B < C.
    puzzle = {"kind": "random", "nodes": ["A", "B", "C", "D", "E"],
              "edges": [["A", "B"], ["A", "C"], ["B", "E"], ["C", "D"]], "start": "A", "goal": "D"}
    events = gr.solve(puzzle, gr.Config(kind="random", heuristic="closest"), random.Random(0))
    assert events[-1].value == "A-C-D" and not any(isinstance(e, Backtrack) for e in events)
    events = gr.solve(puzzle, gr.Config(kind="random", heuristic="order"), random.Random(0))
    assert events[-1].value == "A-C-D" and any(isinstance(e, Backtrack) for e in events)


def test_solver_reports_no_path_and_out_of_budget():
    cut = {**MAZE, "edges": [e for e in MAZE["edges"] if e != ["b2", "c2"]]}
    assert gr.solve(cut, gr.Config(), random.Random(0)) is None  # c2 unreachable
    assert gr.solve(MAZE, gr.Config(max_steps=4), random.Random(0)) is None  # needs 5 steps
    assert gr.solve(MAZE, gr.Config(max_steps=5), random.Random(0)) is not None


def test_the_budget_holds_for_every_heuristic():
    rng = random.Random("budget")
    for max_steps in range(1, 12):
        for heuristic in gr.HEURISTICS:
            config = gr.Config(max_steps=max_steps, heuristic=heuristic)
            for _ in range(30):
                events = gr.solve(gr.sample(config, rng), config, rng)
                if events is not None:
                    assert sum(isinstance(e, Step) for e in events) <= max_steps


def test_sampler_is_deterministic_and_keeps_its_promises():
    for kind in gr.KINDS:
        config = gr.Config(kind=kind)
        a = [gr.sample(config, random.Random(f"det{i}")) for i in range(20)]
        b = [gr.sample(config, random.Random(f"det{i}")) for i in range(20)]
        assert a == b
        for puzzle in a:
            n = config.rows * config.cols if kind == "maze" else config.nodes
            assert len(puzzle["nodes"]) == n and puzzle["start"] != puzzle["goal"]
            assert len(puzzle["edges"]) == (n - 1 if kind == "maze" else config.edges)


def test_mazes_are_uniform_spanning_trees():
    # The 2x2 grid has 4 spanning trees (drop one of the 4 walls' edges), the 2x3 grid 15.
    for rows, cols, trees in ((2, 2, 4), (2, 3, 15)):
        rng = random.Random(f"wilson{rows}{cols}")
        counts = Counter(frozenset(map(frozenset, gr._maze(rows, cols, rng).edges)) for _ in range(3000))
        assert len(counts) == trees
        assert max(counts.values()) < 1.4 * 3000 / trees and min(counts.values()) > 0.6 * 3000 / trees


def test_puzzle_key_ignores_edge_order_and_direction():
    shuffled = {**MAZE, "edges": [[b, a] for a, b in reversed(MAZE["edges"])],
                "nodes": list(reversed(MAZE["nodes"]))}
    assert gr.puzzle_key(shuffled) == gr.puzzle_key(MAZE)
    assert gr.puzzle_key({**MAZE, "start": "c2", "goal": "a1"}) != gr.puzzle_key(MAZE)


def test_every_phrase_is_one_line_and_notes_format():
    step = {"at": "a1", "to": "a2", "final": False}
    lines = [p.format(**gr.step_slots(step)) for p in gr.STEP_PHRASES + gr.FINAL_PHRASES]
    lines += [p.format(**gr.back_slots({"node": "a1"})) for p in gr.BACK_PHRASES]
    lines += [p.format(**gr.note_slots(step, {"node": "a1"})) for p in gr.NOTE_PHRASES]
    assert gr.NOTE_PHRASES[0].format(**gr.note_slots(step, {"node": "a1"})) == "(a2 leads to a dead end.)\n"
    for line in lines:
        assert line.endswith("\n") and line.count("\n") == 1
        assert BACKSPACE not in line and BACKTRACK_TOKEN not in line
        assert false_equations(line) == []


@pytest.mark.parametrize("style", STYLES)
def test_notes_keep_what_failed_and_the_invariant(style):
    events = gr.solve(MAZE, gr.Config(), random.Random(0))
    w = words(gr, events, "none", random.Random(0), style=style, notes=True)
    text = render(events, w, style, notes=True)
    direct = render(events, words(gr, events, "none", random.Random(0), style="direct", notes=True),
                    "direct", notes=True)
    assert direct.startswith("(a2 leads to a dead end.)\nFrom a1 go to b1.\n")
    if style != "search":
        assert collapse(text) == direct
    assert gr.verify(MAZE, final_answer(collapse(text)))
