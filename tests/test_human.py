"""Human traces: each bad file reported by name and reason, good ones imported, mixed into
a generated train split by ratio or repeat."""

import json
import subprocess
import sys

import pytest

from generate import human, pipeline
from solvers import known_answer
from solvers.trace import collapse
from tests.conftest import ROOT
from train.rewards import judge

B = "\b"
GOOD = {"Question": "What is 12 + 7 * 3?", "Answer": 33, "Reasoning": "7 * 3 = 21.\n12 + 21 = 34" + B * 2 + "33.\nAnswer: 33"}
BROKEN = {  # file -> (content, the reason reported)
    "bad-json.json": ('{"Question": "What is 1 + 1?", "Answer": 2,', "bad_json"),
    "no-reasoning.json": (json.dumps({"Question": "What is 1 + 1?", "Answer": 2}), "schema: missing field 'Reasoning'"),
    "answer-text.json": (json.dumps({**GOOD, "Answer": "33"}), "schema: 'Answer' must be an integer"),
    "answer-bool.json": (json.dumps({**GOOD, "Answer": True}), "schema: 'Answer' must be an integer"),
    "too-many-backspaces.json": (json.dumps({**GOOD, "Reasoning": "ab" + B * 3 + "Answer: 33"}), "malformed_backspaces"),
    "wrong-answer.json": (json.dumps({**GOOD, "Answer": 34, "Reasoning": "7 * 3 = 21, 12 + 21 = 34.\nAnswer: 34"}),
                          "wrong_answer: the question's value is 33, not 34"),
    "no-answer-line.json": (json.dumps({**GOOD, "Reasoning": "7 * 3 = 21.\n12 + 21 = 33.\nDone."}), "missing_answer"),
    "erased-answer.json": (json.dumps({**GOOD, "Reasoning": "12 + 21 = 33.\nAnswer: 33" + B * 2}), "missing_answer"),
    "too-long.json": (json.dumps({**GOOD, "Reasoning": "x" * 3000 + "\nAnswer: 33"}), "over_length"),
    "list.json": ("[1, 2]", "schema: expected a JSON object"),
    "unknown-task.json": (json.dumps({**GOOD, "task": "chess"}), "schema: unknown task 'chess'"),
}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "human"
    d.mkdir()
    (d / "good.json").write_text(json.dumps(GOOD))
    (d / "good-free-form.json").write_text(json.dumps(
        {"Question": "Tom has 3 bags of 4 apples. How many apples?", "Answer": 12,
         "Reasoning": "3 + 4 = 7" + B * 9 + "3 * 4 = 12.\nSo 12 apples."}))
    (d / "good.timings.json").write_text("[[0, \"7\"]]")  # the recorder's keystroke timings: not a trace
    for name, (content, _) in BROKEN.items():
        (d / name).write_text(content)
    return d


def test_every_bad_file_is_reported_by_name_and_reason_and_the_good_ones_imported(folder):
    good, bad = human.read_folder(folder)
    assert sorted(r["id"] for r in good) == ["human/good", "human/good-free-form"]
    reasons = dict(bad)
    assert set(reasons) == set(BROKEN)
    for name, (_, reason) in BROKEN.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    r = next(r for r in good if r["id"] == "human/good")
    assert r["Reasoning"] == GOOD["Reasoning"] and r["Answer"] == 33 and r["source"] == "human"
    assert r["task"] == "human" and r["puzzle"] == {"Question": GOOD["Question"], "Answer": 33}
    assert judge("Answer: 33", r["puzzle"], r["task"])["correct"]   # rewards check the known Answer
    assert not judge("Answer: 34", r["puzzle"], r["task"])["correct"]


def test_cli_reports_and_writes_records(folder, tmp_path):
    out = tmp_path / "human.jsonl"
    res = subprocess.run([sys.executable, "-m", "generate.human", str(folder), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    for name in BROKEN:
        assert f"bad  {name}: " in res.stdout
    assert "2 good, 11 bad" in res.stdout
    assert sorted(json.loads(x)["id"] for x in out.read_text().splitlines()) == ["human/good", "human/good-free-form"]


def test_a_file_naming_its_task_is_checked_by_that_task(tmp_path):
    d = tmp_path / "h"
    d.mkdir()
    puzzle = {"numbers": [2, 3, 4], "target": 20}
    (d / "cd-right.json").write_text(json.dumps({"Question": "make 20", "Answer": "(2 + 3) * 4", "task": "countdown",
                                                 "puzzle": puzzle, "Reasoning": "2 + 3 = 5\nAnswer: (2 + 3) * 4"}))
    (d / "cd-wrong.json").write_text(json.dumps({"Question": "make 20", "Answer": "2 + 3 + 4", "task": "countdown",
                                                 "puzzle": puzzle, "Reasoning": "Answer: 2 + 3 + 4"}))
    good, bad = human.read_folder(d)
    assert [r["task"] for r in good] == ["countdown"] and bad[0][0] == "cd-wrong.json"
    assert bad[0][1].startswith("wrong_answer")


def test_the_shipped_examples_are_good():
    good, bad = human.read_folder(ROOT / "data" / "human")
    assert bad == [] and len(good) >= 5
    assert all(B in r["Reasoning"] for r in good)  # every example erases something


@pytest.mark.parametrize("mix, rows", [({"human_ratio": 0.2}, 10), ({"human_repeat": 3}, 6)])
def test_mixing_by_ratio_or_repeat(folder, gen_cfg, tmp_path, mix, rows):
    good_only = tmp_path / "good"
    good_only.mkdir()
    for name in ("good.json", "good-free-form.json"):
        (good_only / name).write_text((folder / name).read_text())
    out, _ = pipeline.run(gen_cfg(tmp_path / "out", n=40, n_val=5, n_test=5, human=str(good_only), **mix))
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": 40 + rows, "val": 5, "test": 5}
    assert man["human"]["rows"] == rows and man["human"]["good_files"] == 2
    train = [json.loads(x) for x in (out / "train" / "shard-00000.jsonl").read_text().splitlines()]
    positions = [i for i, r in enumerate(train) if r["source"] == "human"]
    assert len(positions) == rows and positions[-1] - positions[0] > len(train) // 2   # spread, not bunched
    assert len({train[i]["id"] for i in positions}) == rows                           # copies have their own ids
    for split in ("val", "test"):  # evaluation stays synthetic
        assert all(json.loads(x)["source"] == "synthetic" for x in (out / split / "shard-00000.jsonl").read_text().splitlines())
    assert "human traces" in (out / "README.md").read_text()


def test_bad_human_options_name_the_key(gen_cfg, tmp_path, folder):
    from solvers.config import ConfigError
    for key, value in (("human", str(tmp_path / "missing")), ("human_ratio", 1.0), ("human_repeat", 0)):
        cfg = gen_cfg(tmp_path / "o", **{key: value})
        if key != "human":
            cfg["human"] = str(folder)
        with pytest.raises(ConfigError) as e:
            pipeline.settings(cfg)
        assert e.value.key == key
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no good human traces"):
        pipeline.Generator(pipeline.settings(gen_cfg(tmp_path / "o2", human=str(empty))))


def test_known_answer():
    assert known_answer({"Answer": 12}, "12") and known_answer({"Answer": 12}, 12)
    assert not known_answer({"Answer": 12}, "12.0") and not known_answer({"Answer": 12}, "x" * 100)
    assert collapse(GOOD["Reasoning"]).endswith("Answer: 33")
