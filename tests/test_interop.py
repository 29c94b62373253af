"""Self-Backtracking and Stream-of-Search layouts: export, import, round trips, and the
per-line errors for what cannot be converted. Every file here is written by the test in the
external layout, as those projects' own loaders read it."""

import json
import random

import pytest

from generate import interop, pipeline, validate
from generate.paraphrase import words
from solvers import countdown as cd
from solvers.config import ConfigError
from solvers.trace import Backtrack, collapse, render


def searches(n=40, n_numbers=4):
    config = cd.Config(n_numbers=n_numbers, max_steps=40)
    out = []
    for seed in range(n):
        rng = random.Random(seed)
        while True:
            puzzle = cd.sample(config, rng)
            events = cd.solve(puzzle, config, rng)
            if events is not None:
                out.append((puzzle, events))
                break
    return out


@pytest.mark.parametrize("layout", ["self_backtracking_search", "stream_of_search"])
def test_round_trip_keeps_the_search_and_the_solution(layout):
    backtracked = 0
    for puzzle, events in searches():
        record = {"puzzle": puzzle}
        exported = json.loads(json.dumps(interop.export(layout, record, events)))
        assert exported["nums"] == puzzle["numbers"] and exported["target"] == puzzle["target"]
        p2, ev2 = interop.READERS[layout](exported)
        assert p2 == puzzle
        assert ev2[:-1] == events[:-1]  # the same steps and backtracks, step for step
        text = render(ev2, words(cd, ev2, "none", random.Random(0)), "backspace")
        page = collapse(text)
        assert page == render(events, words(cd, events, "none", random.Random(0)), "direct")
        assert cd.verify(puzzle, ev2[-1].value)
        backtracked += any(isinstance(e, Backtrack) for e in events)
    assert backtracked > 10  # the round trip was tested on searches that backtrack


def test_self_backtracking_search_layout_is_one_long_search():
    puzzle, events = next((p, e) for p, e in searches() if any(isinstance(x, Backtrack) for x in e))
    sb = interop.to_self_backtracking_search(puzzle, events)
    lines = sb["search_path"].split("\n")
    assert lines[-1] == "Goal Reached!"
    assert "<backtrack>" in lines
    for line in lines[:-1]:
        assert line == "<backtrack>" or interop._SB_STEP.match(line)


def test_stream_of_search_fields_and_rating():
    puzzle, events = searches(1)[0]
    sos = interop.to_stream_of_search(puzzle, events, "closest")
    assert set(sos) == {"nums", "target", "solution", "search_path", "rating", "search_type", "optimal_path",
                        "heuristic"}
    assert sos["search_path"].startswith(f"Current State: {puzzle['target']}:{puzzle['numbers']}, Operations: []")
    assert "equal: Goal Reached" in sos["search_path"]
    assert 0 < sos["rating"] < 1
    # optimal_path as their CountDown.convert_to_path narrates it: no node ids of the search, no returns
    assert "Moving to Node" not in sos["optimal_path"] and "Generated Node #2: " in sos["optimal_path"]


def test_stream_of_search_breadth_first_and_failed_last_moves_convert():
    # Written the way their bfs/dfs narrate: a failed last move ("unequal: No Solution"), then a
    # jump to a sibling node, which is a return to the root.
    path = "\n".join([
        "Current State: 13:[5, 3, 2], Operations: []",
        "Exploring Operation: 5+3=8, Resulting Numbers: [2, 8]",
        "Generated Node #0,0: 13:[2, 8] Operation: 5+3=8",
        "Exploring Operation: 5*2=10, Resulting Numbers: [3, 10]",
        "Generated Node #0,1: 13:[3, 10] Operation: 5*2=10",
        "Moving to Node #0,0",
        "Current State: 13:[2, 8], Operations: ['5+3=8']",
        "Exploring Operation: 8+2=10, Resulting Numbers: [10]",
        "10,13 unequal: No Solution",
        "Moving to Node #0,1",
        "Current State: 13:[3, 10], Operations: ['5*2=10']",
        "Exploring Operation: 10+3=13, Resulting Numbers: [13]",
        "13,13 equal: Goal Reached",
    ])
    puzzle, events = interop.from_stream_of_search({"nums": [5, 3, 2], "target": 13, "search_path": path})
    kinds = [type(e).__name__ for e in events]
    # 5+3, 8+2 (failed), back 2 to the root, 5*2, 10+3, answer
    assert kinds == ["Step", "Step", "Backtrack", "Step", "Step", "Answer"]
    assert events[2].k == 2
    assert cd.verify(puzzle, events[-1].value)


@pytest.mark.parametrize("item, message", [
    ({"nums": [5, 3, 2], "target": 13, "search_path": "5 + 3 = 9\n"}, "line 1 ('5 + 3 = 9'): 5 + 3 is 8, not 9"),
    ({"nums": [5, 3, 2], "target": 13, "search_path": "5 + 7 = 12\n"}, "7 is not among the numbers left"),
    ({"nums": [5, 3, 2], "target": 13, "search_path": "5 + 3 = 8\n<backtrack>\n<backtrack>"}, "only 0 are live"),
    ({"nums": [5, 3, 2], "target": 13, "search_path": "five plus three"}, "not a step"),
    ({"nums": [5, 3, 2], "target": 13, "search_path": "5 / 2 = 2"}, "not a whole number"),
    ({"nums": [5, 3, 2], "search_path": ""}, "missing field 'target'"),
    ({"nums": [5, "x"], "target": 13, "search_path": ""}, "'nums' must be positive integers"),
])
def test_self_backtracking_errors_name_the_line_and_the_reason(item, message, tmp_path):
    path = tmp_path / "sb.jsonl"
    good = {"nums": [5, 3, 2], "target": 13, "search_path": "5 * 2 = 10\n10 + 3 = 13\nGoal Reached!"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(item) + "\n")
    with pytest.raises(ConfigError) as e:
        interop.read_traces(path, "self_backtracking_search")
    assert f"{path}: line 2: " in str(e.value) and message in str(e.value)
    kept = interop.read_traces(path, "self_backtracking_search", skip_bad=True)
    assert kept[1] == (None, None) and kept[0][0] == {"numbers": [5, 3, 2], "target": 13}


def test_stream_of_search_error_names_the_item_of_a_json_list(tmp_path):
    bad = {"nums": [5, 3, 2], "target": 13,
           "search_path": "Current State: 13:[5, 3, 2], Operations: []\nExploring Operation: 5+3=9, "
                          "Resulting Numbers: [2, 9]\nGenerated Node #0,0: 13:[2, 9] Operation: 5+3=9\n"
                          "Current State: 13:[2, 9], Operations: ['5+3=9']\n"}
    path = tmp_path / "sos.json"
    path.write_text(json.dumps([bad], indent=4))
    with pytest.raises(ConfigError, match=r"sos.json: item 0: search_path line 4 .*5 \+ 3 is 8, not 9"):
        interop.read_traces(path, "stream_of_search")


@pytest.mark.parametrize("layout", ["self_backtracking_search", "stream_of_search"])
def test_export_then_import_through_the_pipeline(layout, tmp_path, gen_cfg):
    # (layout=self_backtracking, several rows per puzzle: tests/test_outside_data.py)
    # 1. python -m generate layout=...: records in the external layout
    out, _ = pipeline.run(gen_cfg(tmp_path / "exported", layout=layout, n=30, n_val=0, n_test=0))
    exported = (out / "train" / "shard-00000.jsonl").read_text().splitlines()
    items = [json.loads(x) for x in exported]
    assert len(items) == 30 and all({"nums", "target", "search_path"} <= set(i) for i in items)
    assert json.loads((out / "manifest.json").read_text())["config"]["layout"] == layout
    # 2. as their projects store it: Stream of Search as one JSON list, Self-Backtracking as JSON lines
    src = tmp_path / ("sos.json" if layout == "stream_of_search" else "sb.jsonl")
    src.write_text(json.dumps(items, indent=4) if layout == "stream_of_search" else "\n".join(exported) + "\n")
    # 3. python -m generate traces=FILE: re-rendered with real backspaces and validated
    back, _ = pipeline.run(gen_cfg(tmp_path / "imported", traces=str(src), traces_layout=layout))
    records = [json.loads(x) for x in (back / "train" / "shard-00000.jsonl").read_text().splitlines()]
    assert len(records) == 30
    for item, r in zip(items, records):
        assert r["puzzle"] == {"numbers": item["nums"], "target": item["target"]}
        assert r["source"] == "imported" and r["style"] == "backspace"
        assert validate.check(r, cd, 2048) is None
    assert sum("\b" in r["Reasoning"] for r in records) > 5


def test_import_skip_counts_unconvertible_in_the_manifest(tmp_path, gen_cfg):
    path = tmp_path / "sb.jsonl"
    good = {"nums": [5, 3, 2], "target": 13, "search_path": "5 * 2 = 10\n10 + 3 = 13\nGoal Reached!"}
    bad = {"nums": [5, 3, 2], "target": 13, "search_path": "5 * 2 = 11"}
    path.write_text("\n".join(json.dumps(x) for x in (good, bad, good)) + "\n")
    out, _ = pipeline.run(gen_cfg(tmp_path / "out", traces=str(path), on_bad_trace="skip"))
    man = json.loads((out / "manifest.json").read_text())
    # the two solution samples of one puzzle are one search (the second counted as an extra solution)
    assert man["rejections"] == {"unconvertible": 1}
    assert man["counts"] == {"train": 1}


def test_external_layouts_are_countdown_only(tmp_path, gen_cfg):
    with pytest.raises(ConfigError, match="layout"):
        pipeline.settings(gen_cfg(tmp_path, layout="self_backtracking", **{"task": {"name": "graph"}}))
