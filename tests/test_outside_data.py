"""Puzzles and datasets from other projects (issue 17), checked with those projects' own code
(tests/their_code.py) on files in their shapes:

- reasoning-gym's 4-number Countdown (tests/fixtures/reasoning_gym_countdown_4.jsonl) through
  problems=FILE: every puzzle a record within budget;
- Self-Backtracking's two sample kinds, out (their parse_input, validate_steps and train.py
  mask) and in (grouped into one search with real backspaces);
- Stream of Search's generator output in (tests/fixtures/sos_countdown_generate_train.json) and
  our export read by their metric_fn and json.load.
"""

import json
import random
import re
from pathlib import Path

import pytest

from generate import interop, pipeline, validate
from generate.paraphrase import words
from solvers import countdown as cd
from solvers.config import ConfigError
from solvers.trace import Backtrack, Step, check_events, collapse, final_answer, render
from tests import their_code

FIXTURES = Path(__file__).parent / "fixtures"
RG = FIXTURES / "reasoning_gym_countdown_4.jsonl"
SOS = FIXTURES / "sos_countdown_generate_train.json"


def rg_puzzles():
    return [json.loads(line) for line in RG.read_text().splitlines()]


def records(out, split="train"):
    return [json.loads(x) for f in sorted((out / split).glob("shard-*.jsonl")) for x in f.read_text().splitlines()]


# ----------------------------------------------------------------------------- reasoning-gym

@pytest.mark.parametrize("style", [
    "backspace",  # the Done-when: dead ends erased with real backspaces
    "search",     # dead ends kept on the page: each must be a true equation and a real dead end
])
def test_reasoning_gym_puzzles_all_become_records_within_budget(style, tmp_path, gen_cfg):
    out, _ = pipeline.run(gen_cfg(tmp_path / "rg", problems=str(RG), style=style))
    man = json.loads((out / "manifest.json").read_text())
    rs = records(out)
    assert man["counts"] == {"train": 150} and man["rejections"] == {}
    assert all(len(r["Reasoning"]) <= 2048 for r in rs)
    assert all(validate.check(r, cd, 2048) is None and cd.verify(r["puzzle"], r["Answer"]) for r in rs)
    with_dead_ends = sum(r["stats"]["dead_ends"] >= 1 for r in rs)
    assert with_dead_ends > 75, with_dead_ends  # most of them
    if style == "backspace":
        assert sum("\b" in r["Reasoning"] for r in rs) == with_dead_ends


def test_cut_traces_are_the_real_search_restricted_to_some_branches():
    config = cd.Config()
    cut = 0
    for puzzle in rg_puzzles():
        if cd.search(puzzle, config, random.Random(0), config.max_steps)[0] is not None:
            continue  # fits the budget: written as searched
        full, _ = cd.search(puzzle, config, random.Random(0), None)
        events, reason = cd.solve_given(puzzle, config, random.Random(0))
        cut += 1
        assert reason == "" and events[-1] == full[-1]
        check_events(events)
        assert sum(isinstance(e, Step) for e in events) <= config.max_steps
        # every step shown is a step of the full search, in the order it took them
        steps = iter(e for e in full if isinstance(e, Step))
        assert all(any(s == t for t in steps) for s in events if isinstance(s, Step))
        # every return goes back to a state the search was really in, and says so
        live = [puzzle["numbers"]]
        for e in events:
            if isinstance(e, Step):
                live.append(e.data["left"])
            elif isinstance(e, Backtrack):
                del live[len(live) - e.k:]
                assert sorted(live[-1]) == e.state["left"]
        w = words(cd, events, "none", random.Random(0))
        assert collapse(render(events, w, "backspace")) == render(events, w, "direct")
        assert cd.verify(puzzle, final_answer(render(events, w, "direct")))
    assert cut > 30  # the hard puzzles of the issue were exercised


@pytest.mark.parametrize("puzzle, config, reason", [
    ({"numbers": [1, 1, 1, 1], "target": 97}, {}, "no_solution"),     # proved impossible
    ({"numbers": [2, 3], "target": 7}, {}, "no_solution"),            # two numbers, no move hits
    ({"numbers": [3, 7, 11, 13], "target": 997}, {"search_limit": 5}, "unsolved"),  # gave up, proved nothing
])
def test_given_puzzles_without_a_trace_are_named(puzzle, config, reason):
    assert cd.solve_given(puzzle, cd.Config(**config), random.Random(0)) == (None, reason)


def test_no_solution_is_a_named_rejection_in_the_manifest(tmp_path, gen_cfg):
    path = tmp_path / "p.jsonl"
    path.write_text('{"numbers": [1, 1, 1, 1], "target": 97}\n{"numbers": [25, 4, 1, 2], "target": 100}\n')
    out, _ = pipeline.run(gen_cfg(tmp_path / "out", problems=str(path)))
    man = json.loads((out / "manifest.json").read_text())
    assert man["rejections"] == {"no_solution": 1} and man["counts"] == {"train": 1}


# ----------------------------------------------------------------------------- the dial

@pytest.mark.parametrize("dial, allowed", [
    (0, {0}),                      # none: the path that works only
    (2, {2}),                      # a fixed number
    ([1, 3], {1, 2, 3}),           # a range
    ({0: 1, 4: 1}, {0, 4}),        # a distribution
    ({"5": 2.0}, {5}),             # text keys, as the manifest's JSON gives them back
])
def test_the_dial_sets_how_many_dead_ends_a_trace_shows(dial, allowed):
    config = cd.Config(dead_ends=dial)
    shown = []
    for seed in range(60):
        rng = random.Random(seed)
        while (events := cd.solve(puzzle := cd.sample(config, rng), config, rng)) is None:
            pass
        check_events(events)
        w = words(cd, events, "template", rng)
        assert collapse(render(events, w, "backspace")) == render(events, w, "direct")
        assert cd.verify(puzzle, events[-1].value)
        n = cd.record_stats(events)["dead_ends"]
        full, _ = cd.search(puzzle, config, random.Random(0), None)
        met = sum(isinstance(e, Backtrack) for e in full)
        # a search that met fewer dead ends than drawn shows all those it met
        assert n in allowed or (n == met and n < max(allowed)), (dial, n, met)
        shown.append(n)
    assert set(shown) & allowed == allowed  # every value the dial allows turned up


@pytest.mark.parametrize("dial, key", [
    (-1, "task.dead_ends"),
    ([3, 1], "task.dead_ends[1]"),
    ([1, 2, 3], "task.dead_ends"),
    ({"x": 1}, "task.dead_ends"),
    ({1: -1}, "task.dead_ends.1"),
    ({1: 0}, "task.dead_ends"),
    ("many", "task.dead_ends"),
])
def test_the_dial_names_a_bad_value(dial, key):
    with pytest.raises(Exception) as e:
        cd.Config(dead_ends=dial)
    assert getattr(e.value, "key", None) == key


def test_the_dial_is_in_the_manifest_and_each_records_stats(tmp_path, gen_cfg):
    cfg = gen_cfg(tmp_path / "out", n=20, n_val=0, n_test=0)
    cfg["task"]["dead_ends"] = [1, 2]
    out, _ = pipeline.run(cfg)
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["task"]["dead_ends"] == [1, 2]
    shown = [r["stats"]["dead_ends"] for r in records(out)]
    assert max(shown) == 2 and shown.count(0) < 5  # 0 only where the search met none


# ----------------------------------------------------------------------------- Self-Backtracking

def sb_rows(puzzles, backtracks=2):
    config = cd.Config(max_steps=60)
    out = []
    for puzzle in puzzles:
        events, _ = cd.solve_given(puzzle, config, random.Random(0))
        out += interop.to_self_backtracking(puzzle, events, backtracks, 1.0, random.Random(str(puzzle)))
    return out


def sampled(n, n_numbers=4):
    config = cd.Config(n_numbers=n_numbers)
    rng = random.Random("sb")
    return [cd.sample(config, rng) for _ in range(n)]


def test_their_parse_input_and_validate_steps_accept_our_solution_samples():
    rows = sb_rows(sampled(150) + rg_puzzles())
    solutions = [r for r in rows if r["search_path"].endswith("Goal Reached!")]
    assert len(solutions) == 300
    refused = []
    for r in solutions:
        text = their_code.train_text(r["nums"], r["target"], r["search_path"])
        ok, why = their_code.validate_steps(*their_code.parse_input(text))
        if not ok:
            refused.append((r, why))
    # Their validate_steps removes every copy of a number a step uses, so it refuses a correct
    # solution only when a number it uses is there twice at that step (given twice, or made again).
    assert all(repeats_on_the_way(r) for r, _ in refused), refused[:3]
    assert len(solutions) - len(refused) > 250  # the rest: accepted


def repeats_on_the_way(row):
    numbers = list(row["nums"])
    for line in row["search_path"].split("\n")[:-1]:
        a, _, b, _, c = line.split()
        if numbers.count(int(a)) > 1 or numbers.count(int(b)) > 1:
            return True
        numbers.remove(int(a))
        numbers.remove(int(b))
        numbers.append(int(c))
    return False


def test_their_train_mask_hides_the_wrong_step_of_every_backtrack_sample():
    rows = sb_rows(sampled(100) + rg_puzzles()[:50])
    backs = [r for r in rows if r["search_path"].endswith("<backtrack>")]
    assert len(backs) >= 190
    for r in backs:
        text = their_code.train_text(r["nums"], r["target"], r["search_path"])
        start, end = their_code.train_masked_span(text)
        *prefix, wrong, _ = r["search_path"].split("\n")
        assert text[start:end] == wrong + "\n"
        # the wrong step is a legal move on the numbers left, from which the target cannot be reached
        numbers = list(r["nums"])
        for line in prefix + [wrong]:
            a, op, b, _, c = line.split()
            numbers.remove(int(a))
            numbers.remove(int(b))
            numbers.append(int(c))
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b),
                    "/": int(a) // int(b)}[op] == int(c)
        puzzle = {"numbers": numbers, "target": r["target"]}
        assert numbers != [r["target"]] and (len(numbers) == 1 or cd.solve_given(puzzle, cd.Config(), random.Random(0))[1] == "no_solution")
        assert len(text) < 128 * 2  # far inside their 128-token context


SB_SOL = {"nums": [5, 3, 2], "target": 13, "search_path": "5 * 2 = 10\n10 + 3 = 13\nGoal Reached!"}
SB_WRONG_0 = {"nums": [5, 3, 2], "target": 13, "search_path": "5 + 3 = 8\n<backtrack>"}
SB_WRONG_1 = {"nums": [5, 3, 2], "target": 13, "search_path": "5 * 2 = 10\n10 - 3 = 7\n<backtrack>"}
SB_OTHER = {"nums": [4, 6], "target": 24, "search_path": "6 + 4 = 10\n<backtrack>"}
Q = "###Question: numbers [5, 3, 2]->target 13\n###Response:\n"


@pytest.mark.parametrize("items, kinds, counts", [
    # samples of one puzzle anywhere in the file become one search: wrong steps, then the solution
    ([SB_WRONG_1, SB_OTHER, SB_SOL, SB_WRONG_0],
     [["Step", "Backtrack", "Step", "Step", "Backtrack", "Step", "Answer"], None],
     {"solution_samples": 1, "backtrack_samples": 3, "backtrack_only": 1}),
    # their self-improvement files: the prompt inside the text; a bare string too
    ([{"search_path": Q + SB_SOL["search_path"]}, Q + SB_WRONG_0["search_path"] + "<|end_of_text|>"],
     [["Step", "Backtrack", "Step", "Step", "Answer"]], {"solution_samples": 1, "backtrack_samples": 1}),
    # a wrong step hung from a prefix that is not the solution's is left out and counted
    ([SB_SOL, {**SB_WRONG_1, "search_path": "5 + 2 = 7\n7 - 3 = 4\n<backtrack>"}],
     [["Step", "Step", "Answer"]], {"unmatched": 1}),
    # the same wrong step twice is taken back once; a second solution sample is counted
    ([SB_SOL, SB_WRONG_0, SB_WRONG_0, SB_SOL],
     [["Step", "Backtrack", "Step", "Step", "Answer"]], {"extra_solutions": 1}),
    # the earlier long layout still reads as one search
    ([{"nums": [5, 3, 2], "target": 13, "search_path": "5 + 3 = 8\n<backtrack>\n5 * 2 = 10\n10 + 3 = 13\nGoal Reached!"}],
     [["Step", "Backtrack", "Step", "Step", "Answer"]], {"searches": 1}),
])
def test_self_backtracking_samples_group_into_one_search(items, kinds, counts):
    results, got = interop.read_self_backtracking([(f"item {i}", x) for i, x in enumerate(items)])
    assert [None if r[1] is None else [type(e).__name__ for e in r[1]] for r in results] == kinds
    assert {k: v for k, v in got.items() if k in counts} == counts
    for r in results:
        if r[1] is None:
            assert r[2] == "no_goal"
        else:
            assert cd.verify(r[0], r[1][-1].value)


@pytest.mark.parametrize("item, message", [
    ({**SB_SOL, "search_path": "5 + 3 = 9\nGoal Reached!"}, "item 1: line 1 ('5 + 3 = 9'): 5 + 3 is 8, not 9"),
    ({**SB_SOL, "search_path": "5 + 3 = 8"}, "item 1: neither a solution sample"),    # cut off
    ({"search_path": "5 * 2 = 10\n<backtrack>"}, "item 1: missing field 'nums'"),    # no puzzle anywhere
    ({**SB_SOL, "target": 14, "search_path": Q + SB_SOL["search_path"]}, "'target' is 14 but the ###Question says 13"),
])
def test_self_backtracking_sample_errors_name_the_item_and_line(item, message, tmp_path):
    path = tmp_path / "sb.json"
    path.write_text(json.dumps([SB_SOL, item]))
    with pytest.raises(ConfigError, match=re.escape(message)):
        interop.read_traces(path, "self_backtracking")
    # skipped: counted as unconvertible, never as a puzzle without a solution
    assert interop.read_traces(path, "self_backtracking", skip_bad=True)[1] == (None, None)


def test_round_trip_countdown_their_shape_import_backspaces_collapse(tmp_path, gen_cfg):
    # 1. python -m generate layout=self_backtracking: their two kinds of row, and OUT/train.json
    out, _ = pipeline.run(gen_cfg(tmp_path / "exported", layout="self_backtracking", n=40, n_val=0, n_test=0))
    rows = [json.loads(x) for x in (out / "train" / "shard-00000.jsonl").read_text().splitlines()]
    assert json.loads((out / "train.json").read_text()) == rows
    assert sum(r["search_path"].endswith("Goal Reached!") for r in rows) == 40
    assert sum(r["search_path"].endswith("<backtrack>") for r in rows) == 40  # sb_backtrack_samples=1
    # 2. python -m generate traces=FILE: one record per puzzle, wrong steps erased with backspaces
    back, _ = pipeline.run(gen_cfg(tmp_path / "imported", traces=str(out / "train.json")))
    recs = records(back)
    assert len(recs) == 40
    for r in recs:
        assert validate.check(r, cd, 2048) is None
        page = collapse(r["Reasoning"])
        assert "\b" in r["Reasoning"] and "\b" not in page
        assert cd.verify(r["puzzle"], final_answer(page))


def test_backtrack_only_puzzles_are_skipped_and_counted(tmp_path, gen_cfg):
    path = tmp_path / "sb.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (SB_SOL, SB_WRONG_0, SB_OTHER)) + "\n")
    out, _ = pipeline.run(gen_cfg(tmp_path / "out", traces=str(path)))
    man = json.loads((out / "manifest.json").read_text())
    assert man["rejections"] == {"no_goal": 1} and man["counts"] == {"train": 1}


@pytest.mark.parametrize("samples, ratio, rows_per_puzzle", [
    (0, 1.0, {1}),       # solution samples only
    (3, 1.0, {4}),       # three backtrack samples each (the puzzles below have enough wrong moves)
    (2, 0.0, {1}),       # no puzzle gets backtrack samples
    (1, 0.5, {1, 2}),    # about half do
])
def test_self_backtracking_sizes_are_configurable(samples, ratio, rows_per_puzzle):
    seen = set()
    for i, puzzle in enumerate(sampled(40)):
        events = cd.solve_given(puzzle, cd.Config(), random.Random(0))[0]
        rows = interop.export("self_backtracking", {"puzzle": puzzle, "id": str(i)}, events,
                              cd.Config(sb_backtrack_samples=samples, sb_backtrack_ratio=ratio))
        seen.add(len(rows))
    assert seen == rows_per_puzzle


# ----------------------------------------------------------------------------- Stream of Search

def test_their_generator_output_imports_every_goal_reaching_search(tmp_path, gen_cfg):
    items = json.loads(SOS.read_text())
    reached = sum("Goal Reached" in x["search_path"] for x in items)
    # their searches are long: 11 of the 30 go over 2048 characters once rendered
    out, _ = pipeline.run(gen_cfg(tmp_path / "out", traces=str(SOS), traces_layout="stream_of_search", max_chars=10**5))
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": reached} and man["rejections"] == {"no_goal": len(items) - reached}
    assert all(validate.check(r, cd, 10**6) is None for r in records(out))


@pytest.mark.parametrize("path, kept", [
    # a zero on an abandoned branch: the search goes on and reaches the goal
    (["Current State: 13:[5, 5, 13], Operations: []",
      "Exploring Operation: 5-5=0, Resulting Numbers: [13, 0]",
      "Generated Node #0,0: 13:[13, 0] Operation: 5-5=0",
      "Moving to Node #0,0",
      "Current State: 13:[13, 0], Operations: ['5-5=0']",
      "Exploring Operation: 13*0=0, Resulting Numbers: [0]",
      "0,13 unequal: No Solution",
      "Moving to Node #0",
      "Current State: 13:[5, 5, 13], Operations: []",
      "Exploring Operation: 5/5=1, Resulting Numbers: [13, 1]",
      "Generated Node #0,1: 13:[13, 1] Operation: 5/5=1",
      "Moving to Node #0,1",
      "Current State: 13:[13, 1], Operations: ['5/5=1']",
      "Exploring Operation: 13*1=13, Resulting Numbers: [13]",
      "13,13 equal: Goal Reached"], "13 * 5 / 5"),
    # a zero on the kept path: kept, since the answer it makes verifies
    (["Current State: 13:[5, 5, 13], Operations: []",
      "Exploring Operation: 5-5=0, Resulting Numbers: [13, 0]",
      "Generated Node #0,0: 13:[13, 0] Operation: 5-5=0",
      "Moving to Node #0,0",
      "Current State: 13:[13, 0], Operations: ['5-5=0']",
      "Exploring Operation: 13+0=13, Resulting Numbers: [13]",
      "13,13 equal: Goal Reached"], "13 + 5 - 5"),
])
def test_stream_of_search_zero_results_are_kept(path, kept):
    puzzle, events = interop.from_stream_of_search({"nums": [5, 5, 13], "target": 13, "search_path": "\n".join(path)})
    assert events[-1].value == kept and cd.verify(puzzle, kept)


@pytest.mark.parametrize("path", [
    "Current State: 13:[5, 3, 2], Operations: []\nExploring Operation: 5+3=8, Resulting Numbers: [2, 8]\n"
    "Generated Node #0,0: 13:[2, 8] Operation: 5+3=8\nNo solution found.",   # their bfs gave up
    "Current State: 13:[5, 3, 2], Operations: []\n",                           # their dfs ran out of moves
])
def test_stream_of_search_without_goal_is_named_never_reaching_it(path, tmp_path):
    f = tmp_path / "sos.json"
    f.write_text(json.dumps([{"nums": [5, 3, 2], "target": 13, "search_path": path}]))
    assert interop.read_traces(f, "stream_of_search") == [({"numbers": [5, 3, 2], "target": 13}, None, "no_goal")]
    with pytest.raises(interop.NoGoal, match="never reaches"):
        interop.from_stream_of_search({"nums": [5, 3, 2], "target": 13, "search_path": path})


def test_their_metric_fn_and_json_load_read_our_export(tmp_path, gen_cfg):
    cfg = gen_cfg(tmp_path / "out", layout="stream_of_search", n=60, n_val=10, n_test=0)
    cfg["task"]["heuristic"] = "sos_sum"
    out, _ = pipeline.run(cfg)
    for split, n in (("train", 60), ("val", 10)):
        items = json.load(open(out / f"{split}.json"))  # as their evaluation reads a split
        assert len(items) == n
        for x in items:
            score, verdict = their_code.metric_fn(x["search_path"], mode="sft")
            assert verdict == "Valid path." and score == pytest.approx(x["rating"])
            assert their_code.parse_trajectory(x["optimal_path"], mode="sft") == "Valid path."
            assert x["heuristic"] == "sum_heuristic"
            # the numbers left keep their order and the result is appended, as their combine_nums does
            for line in x["search_path"].split("\n"):
                if line.startswith("Current State:"):
                    nums = json.loads(line.split(":", 2)[2].split(", Operations")[0])
                elif line.startswith("Exploring Operation:"):
                    op, left = line[len("Exploring Operation: "):].split(", Resulting Numbers: ")
                    a, b = [int(v) for v in op.split("=")[0].replace("+", " ").replace("-", " ").replace("*", " ").replace("/", " ").split()]
                    rest = list(nums)
                    rest.remove(a)
                    rest.remove(b)
                    assert json.loads(left) == rest + [int(op.split("=")[1])]


def test_breadth_first_conversion_keeps_the_expanded_nodes_and_drops_the_others():
    # The import follows the nodes a search expanded (narrated a Current State for); nodes a
    # breadth-first search generated but never expanded are not in the converted events.
    items = [x for x in json.loads(SOS.read_text()) if "Goal Reached" in x["search_path"]]
    dropped = {"dfs": 0, "bfs": 0}
    for x in items:
        puzzle, events = interop.from_stream_of_search(x)
        states = {tuple(e.data["left"]) for e in events if isinstance(e, Step) and not e.data["final"]}
        expanded = {tuple(sorted(json.loads(line.split(":", 2)[2].split(", Operations")[0])))
                    for line in x["search_path"].split("\n")[1:] if line.startswith("Current State:")}
        expanded.discard(tuple(sorted(x["nums"])))  # the root, narrated again on each return
        assert expanded <= states  # every expanded node is a state the converted search is in
        n = interop.sos_nodes(x["search_path"])
        dropped[x["search_type"][:3]] += n["generated"] - n["expanded"]
    assert dropped["bfs"] > 0
    assert dropped["dfs"] <= 2  # their DFS moves to every node it generates (siblings from equal numbers read the same)
