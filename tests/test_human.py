"""Human traces: each bad file reported by name and reason, good ones imported, mixed into
a generated train split by ratio or repeat."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_a_human_folder_that_cannot_be_listed_is_refused_naming_the_key_and_folder(gen_cfg, tmp_path):
    """human=DIR where DIR is a file, or a path through one: a ConfigError, not a traceback
    (it said "no such folder", of a file that is there)."""
    from solvers.config import ConfigError
    a_file = tmp_path / "traces.json"
    a_file.write_text(json.dumps(GOOD))
    for where in (a_file, a_file / "inner"):
        with pytest.raises(ConfigError) as e:
            pipeline.settings(gen_cfg(tmp_path / "o", human=str(where)))
        assert e.value.key == "human" and f"{where} is not a folder" in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="human: must be the path of a folder of human traces, got 5"):
        pipeline.settings(gen_cfg(tmp_path / "o", human=5))
    assert not (tmp_path / "o").exists()


def refuse_to_list(monkeypatch, folder):
    """os.scandir of ``folder`` fails as it does for a user without read permission (root
    lists any folder, so chmod alone cannot show this where the tests run as root)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.abspath(path) == os.path.abspath(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("how", ["mocked", "chmod"])
def test_a_human_folder_without_read_permission_is_refused_naming_the_key_and_folder(gen_cfg, folder, tmp_path,
                                                                                     monkeypatch, how):
    """Before: settings saw a folder, and the run's fingerprint died in os.scandir with a
    PermissionError traceback."""
    from solvers.config import ConfigError
    if how == "chmod" and os.geteuid() == 0:
        pytest.skip("root lists a folder whatever its permissions")
    if how == "mocked":
        refuse_to_list(monkeypatch, folder)
    else:
        folder.chmod(0o000)
    try:
        with pytest.raises(ConfigError) as e:
            pipeline.settings(gen_cfg(tmp_path / "o", human=str(folder)))
    finally:
        folder.chmod(0o755)
    assert e.value.key == "human" and str(e.value) == f"human: cannot list the folder {folder}: Permission denied"
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_human_file_without_a_traceback(tmp_path, cli):
    a_file = tmp_path / "traces.json"
    a_file.write_text(json.dumps(GOOD))
    r = cli("n=5", "n_val=0", "n_test=0", f"out={tmp_path / 'out'}", f"human={a_file}", "progress=false",
            "workers=1", cwd=tmp_path)
    assert r.returncode == 2 and f"error: human: {a_file} is not a folder" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    r = subprocess.run([sys.executable, "-m", "generate.human", str(a_file)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == f"error: {a_file} is not a folder (a file, or a path through a file)\n"


def test_known_answer():
    assert known_answer({"Answer": 12}, "12") and known_answer({"Answer": 12}, 12)
    assert not known_answer({"Answer": 12}, "12.0") and not known_answer({"Answer": 12}, "x" * 100)
    assert collapse(GOOD["Reasoning"]).endswith("Answer: 33")


# ----------------------------------------------------------------------------- any folder

def _write(text):
    return lambda p: p.write_text(text, encoding="utf-8")


def _sparse(size):
    def make(p):
        with open(p, "wb") as f:
            f.truncate(size)
    return make


ODD = {  # file -> (how to make it, the reason reported): each crashed, hung or leaked the import before
    "deep.json": (_write('{"Question": ' + "[" * 100_000 + "]" * 100_000 + "}"), "too_deep"),  # RecursionError
    "long-int.json": (_write('{"Question": "What is 1 + 1?", "Reasoning": "Answer: 2", "Answer": ' + "9" * 5000 + "}"),
                      "integer_too_long: an integer of 5000 digits"),  # Python's int-from-text limit: ValueError
    "dir.json": (lambda p: p.mkdir(), "not_a_file: a directory"),  # IsADirectoryError
    "fifo.json": (lambda p: os.mkfifo(p), "not_a_file: a FIFO"),  # opening it blocked forever
    "link-to-fifo.json": (lambda p: p.symlink_to("fifo.json"), "not_a_file: a FIFO"),  # the same, through a link
    "zero.json": (lambda p: p.symlink_to("/dev/zero"), "outside_folder"),  # read until MemoryError
    "escape.json": (lambda p: p.symlink_to(p.parent.parent / "outside.json"), "outside_folder"),  # imported a file
    "loop.json": (lambda p: p.symlink_to(p.name), "unreadable"),  # a symlink to itself
    "surrogate.json": (_write(json.dumps({**GOOD, "Question": "What is 12 + 7 * 3?\ud800"})),  # crashed --out
                       "bad_unicode: 'Question' holds a lone surrogate U+D800 at character 19"),
    "surrogate-puzzle.json": (_write(json.dumps({**GOOD, "task": "countdown", "Answer": "x",  # deep in a field
                                                 "puzzle": {"numbers": [1, 2], "t\udc80": 3}})),
                              "bad_unicode: a key of 'puzzle' holds a lone surrogate U+DC80"),
    "nul.json": (_write(json.dumps({**GOOD, "Reasoning": "\x00" + GOOD["Reasoning"]})),
                 "bad_unicode: 'Reasoning' holds NUL (U+0000) at character 0"),
    "latin1.json": (lambda p: p.write_bytes(json.dumps({**GOOD, "Question": "Was ist 12 + 7 * 3? Ä"}).encode()
                                            .replace(b"\\u00c4", b"\xc4")), "bad_unicode: not UTF-8: byte 0xc4"),
    "huge.json": (_sparse(1 << 40), "too_large: 1099511627776 bytes"),  # 1 TiB, sparse: never read
    "padded.json": (_write(json.dumps(GOOD) + " " * (2 << 20)), "too_large"),  # over 1 MiB
    "nan.json": (_write(json.dumps({**GOOD, "Answer": float("nan")})), "bad_json: NaN is not a JSON number"),
    "task-list.json": (_write(json.dumps({**GOOD, "task": ["countdown"]})), "schema: 'task' must be a task name"),
}


def _call_with_deadline(fn, *args, seconds=60):
    """fn(*args) in a thread: a FIFO that blocks the import fails the test instead of hanging it."""
    import threading
    out = {}

    def call():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # re-raised below, in the test's thread
            out["error"] = e
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} still running after {seconds} s (blocked on a FIFO?)"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.parametrize("name", ODD)
def test_an_odd_entry_is_reported_by_name_and_reason_beside_a_good_file(tmp_path, name):
    d = tmp_path / "human"
    d.mkdir()
    (tmp_path / "outside.json").write_text(json.dumps(GOOD))
    (d / "good.json").write_text(json.dumps(GOOD))
    if name == "link-to-fifo.json":
        ODD["fifo.json"][0](d / "fifo.json")
    make, reason = ODD[name]
    make(d / name)
    good, bad = _call_with_deadline(human.read_folder, d)
    assert [r["id"] for r in good] == ["human/good"]
    assert dict(bad)[name].startswith(reason), bad


@pytest.fixture
def odd_folder(tmp_path):
    """Two good traces (one reached through a symlink inside the folder) among every kind of bad entry."""
    d = tmp_path / "human"
    d.mkdir()
    (tmp_path / "outside.json").write_text(json.dumps(GOOD))
    (d / "good.json").write_text(json.dumps(GOOD))
    (d / "link-to-good.json").symlink_to("good.json")
    for name, (make, _) in ODD.items():
        make(d / name)
    # a file name that is not UTF-8 (Linux allows any bytes): it would have become an id nobody can write
    with open(os.path.join(os.fsencode(d), b"bad-\xff.json"), "w") as f:
        f.write(json.dumps(GOOD))
    return d


def test_any_folder_every_odd_entry_is_reported_and_the_good_ones_imported(odd_folder):
    good, bad = _call_with_deadline(human.read_folder, odd_folder)
    assert sorted(r["id"] for r in good) == ["human/good", "human/link-to-good"]
    reasons = dict(bad)
    assert set(reasons) == set(ODD) | {"bad-\\xff.json"}
    for name, (_, reason) in ODD.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert reasons["bad-\\xff.json"].startswith("bad_unicode: the file name holds a lone surrogate")
    for name, reason in bad:
        assert reason.split(":")[0] in human.REASONS
        (name + reason).encode("utf-8")  # every report can be printed and put in a manifest


def test_read_bytes_never_opens_what_it_refuses(tmp_path):
    cases = [  # (path, folder, max_bytes, the reason)
        (Path("/dev/zero"), Path("/dev"), 100, "not_a_file: a character device"),  # would never end
        (Path("/dev/null"), Path("/dev"), 100, "not_a_file: a character device"),
        (tmp_path, tmp_path.parent, 100, "not_a_file: a directory"),
        (tmp_path / "missing.json", tmp_path, 100, "unreadable: FileNotFoundError"),
    ]
    for path, folder, limit, reason in cases:
        with pytest.raises(human.BadFile) as e:
            human.read_bytes(path, folder, limit)
        assert str(e.value).startswith(reason), (path, str(e.value))
    exact = tmp_path / "exact.json"
    exact.write_bytes(b"x" * 100)
    assert human.read_bytes(exact, tmp_path, 100) == b"x" * 100  # the limit itself is allowed
    with pytest.raises(human.BadFile, match="too_large: 100 bytes, the limit is 99"):
        human.read_bytes(exact, tmp_path, 99)


def test_cli_survives_any_folder_and_writes_out_whole(odd_folder, tmp_path):
    out = tmp_path / "records" / "human.jsonl"
    res = subprocess.run([sys.executable, "-m", "generate.human", str(odd_folder), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    for name in ODD:
        assert f"bad  {name}: " in res.stdout
    assert f"2 good, {len(ODD) + 1} bad" in res.stdout
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["human/good", "human/link-to-good"]
    assert os.listdir(out.parent) == ["human.jsonl"]  # the temporary file was renamed, none is left
    # --out naming a folder: an error, nothing written, nothing left behind
    res = subprocess.run([sys.executable, "-m", "generate.human", str(odd_folder), "--out", str(out.parent)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and "cannot write --out" in res.stderr, res.stderr
    assert os.listdir(out.parent) == ["human.jsonl"]


def test_mixing_survives_any_folder(odd_folder, gen_cfg, tmp_path):
    """generate human=DIR: bad entries skipped and listed, no FIFO opened (the fingerprint
    reads the folder too), no half-written shard left."""
    out, _ = _call_with_deadline(pipeline.run, gen_cfg(tmp_path / "out", n=10, n_val=2, n_test=2,
                                                       human=str(odd_folder), human_repeat=1))
    man = json.loads((out / "manifest.json").read_text())
    assert man["human"]["good_files"] == 2 and man["human"]["rows"] == 2
    assert {b["file"] for b in man["human"]["bad_files"]} == set(ODD) | {"bad-\\xff.json"}
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    train = [json.loads(x) for x in (out / "train" / "shard-00000.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(r["source"] == "human" for r in train) == 2
