"""generate writes only into a folder it owns, one run at a time, and says what it dropped.

Issue 15: ``out=.`` in a clone deleted its train/ package; ``out=/`` wrote /README.md; two runs
into one folder raced; n=10**12 ended in a MemoryError; a problems file that is not UTF-8, or
whose puzzles are all unsolvable, or that repeats itself, or a Sudoku with several solutions,
went by without a word that pointed at the line.

Cases that would write outside tmp_path if the guard regressed (/, home, the repository) call
``pipeline.settings`` (which only checks) rather than run the pipeline.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generate import pipeline
from generate.write import RunLock, check_out
from solvers import sudoku as sd
from solvers.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SUDOKU = {"name": "sudoku", "size": 4, "blanks": 11, "heuristic": "order", "max_steps": 30}
UNIQUE = '{"size": 4, "grid": "...4/..31/...2/.1.."}'    # one solution: 1324/4231/3412/2143
TWO_WAYS = '{"size": 4, "grid": "..34/3412/..43/4321"}'  # 12/21 or 21/12 in the first column pair


def tree_bytes(folder: Path) -> dict:
    """Every file and folder under ``folder`` with its bytes: what "byte-identical" compares."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def shard_bytes(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/shard-*.jsonl"))}


def somebody_elses(folder: Path) -> Path:
    """A folder a user keeps things in, with the names finalising writes."""
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "__init__.py").write_text("# a package, not a split\n")
    (folder / "README.md").write_text("my notes\n")
    (folder / "notes.txt").write_text("keep me\n")
    return folder


# ----------------------------------------------------------------------------- which folders

def test_cli_refuses_a_folder_it_did_not_write_and_leaves_it_byte_identical(tmp_path, cli):
    out = somebody_elses(tmp_path / "mine")
    before = tree_bytes(out)
    r = cli("n=20", "n_val=0", "n_test=0", f"out={out}", "progress=false", "workers=1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"out: {out} is not empty and holds no dataset of this project" in r.stderr
    assert "README.md, notes.txt, train/" in r.stderr    # what is in it, by name
    assert "Traceback" not in r.stderr
    assert tree_bytes(out) == before


def _home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _clone(tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return clone


@pytest.mark.parametrize("where, message", [
    (lambda tmp, mp: Path("/"), "is the root of the file system"),      # even as root: never /README.md
    (_home, "is the home folder"),                                      # refused even when empty
    (lambda tmp, mp: ROOT, "is the root of the backspace repository"),  # out=. in the checkout
    (_clone, "is the root of the backspace repository"),                # another clone, by its pyproject.toml
    (lambda tmp, mp: ROOT / "generate" / "..", "is the root of the backspace repository"),  # spelt another way
])
def test_root_home_and_repository_are_refused_outright(tmp_path, monkeypatch, gen_cfg, where, message):
    folder = where(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match=message) as e:
        pipeline.settings(gen_cfg(folder, n=20, n_val=0, n_test=0))
    assert e.value.key == "out"


@pytest.mark.parametrize("state", [
    "missing",    # made
    "empty",      # used
    "killed",     # a run killed before its fingerprint left an empty .work/
    "finished",   # a finished dataset of the same config: nothing to do
])
def test_missing_empty_and_own_folders_are_accepted(tmp_path, gen_cfg, state):
    out = tmp_path / "d"
    cfg = gen_cfg(out, n=30, n_val=0, n_test=0)
    if state == "empty":
        out.mkdir()
    elif state == "killed":
        (out / ".work").mkdir(parents=True)
    elif state == "finished":
        pipeline.run(cfg)
    pipeline.run(cfg)
    assert json.loads((out / "manifest.json").read_text())["counts"] == {"train": 30}
    assert not (out / ".work").exists()


def test_out_dot_in_a_new_folder_holds_the_dataset_and_nothing_of_hydras(tmp_path, cli):
    # conf/generate.yaml keeps Hydra out of the working folder (run.dir=., no .hydra/, no log file)
    new = tmp_path / "new"
    new.mkdir()
    r = cli("n=10", "n_val=0", "n_test=0", "out=.", "progress=false", "workers=1", cwd=new)
    assert r.returncode == 0, r.stderr
    assert json.loads((new / "manifest.json").read_text())["counts"] == {"train": 10}
    assert sorted(p.name for p in new.iterdir()) == ["README.md", "manifest.json", "train"]


def test_out_dot_in_somebody_elses_folder_leaves_it_byte_identical(tmp_path, cli):
    # the working folder itself: Hydra must not have written its outputs/ there before the refusal
    mine = somebody_elses(tmp_path / "mine")
    before = tree_bytes(mine)
    r = cli("n=20", "n_val=0", "n_test=0", "out=.", "progress=false", "workers=1", cwd=mine)
    assert r.returncode == 2 and "is not empty and holds no dataset of this project" in r.stderr, r.stderr
    assert tree_bytes(mine) == before


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_out(tmp_path / "f")


# ----------------------------------------------------------------------------- finalising

class Interrupt(Exception):
    pass


def interrupted_after_one_chunk(cfg) -> Path:
    """Run ``cfg`` and stop it after its first chunk: an unfinished dataset. Returns its folder."""
    def stop(split, start):
        raise Interrupt

    with pytest.raises(Interrupt):
        pipeline.run(cfg, on_chunk=stop)
    return Path(cfg["out"])


def test_resume_refuses_names_it_did_not_make_and_leaves_them(tmp_path, gen_cfg):
    # An unfinished dataset, then somebody puts a train/ and a README.md into it: the resumed
    # run must not delete or overwrite them (today's finalise removed train/ and replaced README.md).
    cfg = gen_cfg(tmp_path / "r", n=200, n_val=0, n_test=0, shard_size=100)
    out = interrupted_after_one_chunk(cfg)
    somebody_elses(out)
    theirs = {k: v for k, v in tree_bytes(out).items() if not k.startswith(".work")}
    with pytest.raises(ConfigError, match=r"r/train, \S*r/README.md are in the way and not written by this run"):
        pipeline.run(cfg)
    assert {k: v for k, v in tree_bytes(out).items() if not k.startswith(".work")} == theirs
    assert not (out / "manifest.json").exists()


def test_an_interrupted_finalise_is_finished_from_what_it_made(tmp_path, gen_cfg, monkeypatch):
    # Killed after writing train/ and before val/: the resumed finalise removes its own train/
    # (recorded in .work/made.json) and the result is the uninterrupted run's, byte for byte.
    cfg = gen_cfg(tmp_path / "f", n=60, n_val=20, n_test=0)
    original = pipeline.Generator.finalize_split

    def dies_at_val(self, split, size):
        if split == "val":
            raise Interrupt
        return original(self, split, size)

    monkeypatch.setattr(pipeline.Generator, "finalize_split", dies_at_val)
    with pytest.raises(Interrupt):
        pipeline.run(cfg)
    out = Path(cfg["out"])
    assert (out / "train").is_dir() and not (out / "manifest.json").exists()
    monkeypatch.setattr(pipeline.Generator, "finalize_split", original)
    pipeline.run(cfg)
    fresh, _ = pipeline.run(gen_cfg(tmp_path / "fresh", n=60, n_val=20, n_test=0))
    assert shard_bytes(out) == shard_bytes(fresh)
    assert not (out / ".work").exists()


# ----------------------------------------------------------------------------- one run at a time

RUNNER = """
import json, os, signal, sys, time
from pathlib import Path
from generate import pipeline

cfg, phase, action, ready, go = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5])

def pause(*_):
    ready.write_text(str(os.getpid()))
    if action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    while not go.exists():
        time.sleep(0.05)

on_chunk = None
if phase == "chunks":
    on_chunk = pause
else:
    finalize = pipeline.Generator.finalize
    pipeline.Generator.finalize = lambda self: (pause(), finalize(self))[1]
pipeline.run(cfg, on_chunk=on_chunk)
"""


def start_run(tmp_path, cfg, phase, action):
    """A real ``pipeline.run`` in another process that stops at ``phase`` (after its first
    chunk, or as finalising starts) and waits for the "go" file, or kills itself there."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    ready, go = tmp_path / f"ready-{phase}-{action}", tmp_path / f"go-{phase}-{action}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg), phase, action, str(ready), str(go)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None or action == "die", proc.communicate()
        if action == "die" and proc.poll() is not None:
            break
        assert time.monotonic() < deadline, "the first run never got there"
        time.sleep(0.05)
    return proc, go


CLI = ("n=200", "n_val=0", "n_test=0", "shard_size=100", "progress=false", "workers=1")


@pytest.mark.slow
@pytest.mark.parametrize("phase", [
    "chunks",    # the second run died with FileNotFoundError when the first removed .work
    "finalise",  # a second run started during finalising left a stale .work/
])
def test_a_second_run_fails_at_once_naming_the_first(tmp_path, cli, gen_cfg, phase):
    out = tmp_path / "busy"
    cfg = gen_cfg(out, n=200, n_val=0, n_test=0, shard_size=100)
    first, go = start_run(tmp_path, cfg, phase, "wait")
    try:
        before = tree_bytes(out)
        t0 = time.monotonic()
        r = cli(*CLI, f"out={out}")
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"out: {out} is in use by another generate run (pid {first.pid} on " in r.stderr
        assert "runner.py" in r.stderr                      # the other run's command
        assert "Traceback" not in r.stderr
        assert time.monotonic() - t0 < 60                   # at once, not after waiting for the first
        assert tree_bytes(out) == before                    # and having touched nothing
    finally:
        go.write_text("")
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads((out / "manifest.json").read_text())["counts"] == {"train": 200}
    assert not (out / ".work").exists()


@pytest.mark.slow
def test_a_killed_runs_lock_is_taken_over_with_a_message(tmp_path, gen_cfg, capsys):
    out = tmp_path / "killed"
    cfg = gen_cfg(out, n=200, n_val=0, n_test=0, shard_size=100)
    dead, _ = start_run(tmp_path, cfg, "chunks", "die")
    dead.communicate(timeout=120)
    assert dead.returncode == -signal.SIGKILL
    assert f'"pid": {dead.pid}' in (out / ".work" / "run.lock").read_text()  # the lock file outlived it
    pipeline.run(cfg)
    err = capsys.readouterr().err
    assert f"taking over the lock of an earlier run that is no longer running (pid {dead.pid} on " in err
    fresh, _ = pipeline.run(gen_cfg(tmp_path / "fresh", n=200, n_val=0, n_test=0, shard_size=100))
    assert shard_bytes(out) == shard_bytes(fresh)


@pytest.mark.slow
def test_shards_in_two_live_processes_share_out(tmp_path, cli, gen_cfg):
    # Different shards are meant to share OUT at the same time: each has its own lock. The one
    # that makes the last chunk finalises; the last one to end removes .work.
    out = tmp_path / "sharded"
    cfg = gen_cfg(out, n=200, n_val=0, n_test=0, shard_size=100, shard=0, num_shards=2)
    first, go = start_run(tmp_path, cfg, "chunks", "wait")  # shard 0 waits after its one chunk
    try:
        r = cli(*CLI, f"out={out}", "shard=1", "num_shards=2")
        assert r.returncode == 0, r.stderr
        assert (out / "manifest.json").exists()            # shard 1 made the last chunk: it finalised
        assert (out / ".work" / "run-0-of-2.lock").exists()  # and left .work to shard 0, still running
    finally:
        go.write_text("")
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    single, _ = pipeline.run(gen_cfg(tmp_path / "single", n=200, n_val=0, n_test=0, shard_size=100))
    assert shard_bytes(out) == shard_bytes(single)
    assert not (out / ".work").exists()


def test_lock_holder_is_named_from_the_lock_file(tmp_path):
    # What the refusal prints: the fields a user needs to find the other run.
    path = tmp_path / "run.lock"
    path.write_text(json.dumps({"pid": 42, "host": "h", "started": "t", "command": "python -m generate n=5"}))
    assert RunLock.holder(path) == "pid 42 on h, started t: python -m generate n=5"
    path.write_text("")  # created, details not written yet
    assert "has not written its details yet" in RunLock.holder(path)


# ----------------------------------------------------------------------------- sizes

GiB = 2**30


@pytest.mark.parametrize("memory, overrides, key", [
    (None, {"n": 10**12}, "n"),                        # any machine: a MemoryError after 14 s, before
    (8 * GiB, {"n": 10, "n_val": 10**9}, "n_val"),     # each split's key is named
    (8 * GiB, {"n": 10, "n_test": 10**9}, "n_test"),
    (8 * GiB, {"n": 2 * 10**7, "shard_size": 1}, "shard_size"),  # the records fit, one chunk each does not
])
def test_a_size_too_large_for_memory_is_refused_before_anything_is_written(tmp_path, gen_cfg, monkeypatch,
                                                                          memory, overrides, key):
    if memory is not None:
        monkeypatch.setattr("generate.settings.memory_bytes", lambda: memory)
    out = tmp_path / "big"
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        pipeline.settings(gen_cfg(out, **overrides))
    assert e.value.key == key and "GiB" in str(e.value)
    assert time.monotonic() - t0 < 5
    assert not out.exists()


@pytest.mark.parametrize("n, shard_size", [
    (10**7, 10_000),   # 10**7 records need about 1.1 GiB of bookkeeping: under 4 GiB
    (10**6, 1),        # a million one-record chunks: about 0.4 GiB
])
def test_a_size_that_fits_is_accepted(tmp_path, gen_cfg, monkeypatch, n, shard_size):
    monkeypatch.setattr("generate.settings.memory_bytes", lambda: 8 * GiB)
    fake_disk(monkeypatch, 2**50)  # the memory check alone: whatever this machine's disk holds
    s = pipeline.settings(gen_cfg(tmp_path / "ok", n=n, shard_size=shard_size))
    assert s.sizes["train"] == n


def fake_disk(monkeypatch, free: int) -> list:
    """shutil.disk_usage with ``free`` bytes free; returns the list of paths it was asked about."""
    import shutil
    from collections import namedtuple
    usage, asked = namedtuple("usage", "total used free"), []

    def disk_usage(path):
        asked.append(Path(path))
        return usage(10 * free + 1, 9 * free + 1, free)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    return asked


def test_a_run_that_cannot_fit_on_disk_is_refused_naming_out_before_anything_is_written(tmp_path, gen_cfg,
                                                                                       monkeypatch):
    from generate.settings import MIN_RECORD_BYTES
    out = tmp_path / "new" / "data"    # not there yet: its file system is that of the nearest folder that is
    need = MIN_RECORD_BYTES * (10**6 + 2000)  # every record at its shortest, counted once
    asked = fake_disk(monkeypatch, need - 1)
    with pytest.raises(ConfigError) as e:
        pipeline.settings(gen_cfg(out, n=10**6, n_val=1000, n_test=1000))
    assert e.value.key == "out" and str(e.value).startswith(f"out: {out} is on a file system with ")
    assert "1,002,000 records asked for" in str(e.value)
    assert asked == [tmp_path.resolve()] and not (tmp_path / "new").exists()
    fake_disk(monkeypatch, need)
    pipeline.settings(gen_cfg(out, n=10**6, n_val=1000, n_test=1000))   # exactly enough: accepted


def test_the_disk_floor_is_below_every_record_written(tmp_path, gen_cfg):
    """MIN_RECORD_BYTES is a floor: direct traces of 3-number Countdown, the shortest records
    the default task writes, are all longer, and the run writes each twice (chunk, shard)."""
    from generate.settings import MIN_RECORD_BYTES
    out, _ = pipeline.run(gen_cfg(tmp_path / "d", n=40, n_val=0, n_test=0, style="direct"))
    lengths = [len(line) + 1 for line in (out / "train" / "shard-00000.jsonl").read_bytes().splitlines()]
    assert len(lengths) == 40 and min(lengths) > MIN_RECORD_BYTES, (min(lengths), MIN_RECORD_BYTES)


def test_a_resumed_run_needs_only_what_its_chunks_do_not_hold_and_a_finished_one_nothing(tmp_path, gen_cfg,
                                                                                           monkeypatch):
    from generate.settings import MIN_RECORD_BYTES
    cfg = gen_cfg(tmp_path / "r", n=200, n_val=0, n_test=0, shard_size=100)
    out = interrupted_after_one_chunk(cfg)
    written = sum(p.stat().st_size for p in (out / ".work").rglob("chunk-*.jsonl"))
    assert written > 0
    fake_disk(monkeypatch, MIN_RECORD_BYTES * 200 - written)
    pipeline.settings(cfg)
    fake_disk(monkeypatch, MIN_RECORD_BYTES * 200 - written - 1)
    with pytest.raises(ConfigError, match="out: .* MiB free"):
        pipeline.settings(cfg)
    monkeypatch.undo()
    pipeline.run(cfg)
    fake_disk(monkeypatch, 0)
    assert pipeline.run(cfg)[0] == out    # finished: nothing to write, so no free space needed


# ----------------------------------------------------------------------------- problems files

@pytest.mark.parametrize("content, message", [
    (b'{"numbers": [1, 2, 3], "target": 6}\n\n{"numbers": [1, 2, 3], "target": 6, "\xff": 1}\n',
     "p.jsonl:3: not UTF-8 (byte 0xff at column 38)"),     # after a blank line: lines are counted, not puzzles
    ('{"numbers": [1, 2, 3], "target": 6} # café\n'.encode("latin-1"),
     "p.jsonl:1: not UTF-8 (byte 0xe9 at column 42)"),     # a Latin-1 file
])
def test_problems_file_that_is_not_utf8_names_the_line(tmp_path, cli, content, message):
    problems = tmp_path / "p.jsonl"
    problems.write_bytes(content)
    out = tmp_path / "bad"
    r = cli(f"problems={problems}", f"out={out}", "progress=false", "workers=1")
    assert r.returncode == 2
    assert f"problems: {problems.parent}/{message}" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("key, extra", [
    ("traces", ["traces_layout=stream_of_search"]),   # imported searches: read whole, as JSON or JSON lines
    ("decontaminate", []),                           # puzzles and questions to keep out of every split
])
def test_traces_and_decontaminate_files_that_are_not_utf8_name_the_line(tmp_path, cli, key, extra):
    given = tmp_path / "f.jsonl"
    given.write_bytes(b'{"nums": [1, 2], "target": 3}\n{"question": "caf\xe9"}\n')
    out = tmp_path / "bad"
    r = cli(f"{key}={given}", *extra, f"out={out}", "progress=false", "workers=1")
    assert r.returncode == 2, r.stderr
    assert f"{key}: {given}:2: not UTF-8 (byte 0xe9 at column 18)" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_each_dropped_duplicate_names_its_line(tmp_path, gen_cfg, capsys):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"numbers": [10, 18, 10, 9], "target": 47}\n'
                        '{"numbers": [3, 4, 5], "target": 35}\n'
                        '\n'
                        '{"numbers": [9, 10, 18, 10], "target": 47}\n'    # line 4: line 1 in another order
                        '{"numbers": [4, 3, 5], "target": 35}\n'          # line 5: line 2 again
                        '{"numbers": [10, 9, 10, 18], "target": 47}\n')   # line 6: line 1 again
    out, _ = pipeline.run(gen_cfg(tmp_path / "p", problems=str(problems)))
    err = capsys.readouterr().err
    for line, first in ((4, 1), (5, 2), (6, 1)):
        assert f"problems: {problems}:{line}: dropped, the same puzzle as line {first}\n" in err
    assert err.count("dropped, the same puzzle") == 3
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": 2} and man["rejections"] == {"duplicate": 3}


@pytest.mark.parametrize("lines, task, reason", [
    (['{"numbers": [1, 1, 1], "target": 97}', '{"numbers": [1, 2, 1], "target": 99}'], None,
     "no_solution 2"),                                               # no puzzle can be solved
    ([TWO_WAYS], SUDOKU, "multiple_solutions 1"),                    # no puzzle has one answer
])
def test_a_split_with_no_record_exits_nonzero_and_says_why(tmp_path, cli, lines, task, reason):
    problems = tmp_path / "p.jsonl"
    problems.write_text("\n".join(lines) + "\n")
    out = tmp_path / "none"
    args = [f"task={task['name']}"] if task else []
    r = cli(*args, f"problems={problems}", f"out={out}", "progress=false", "workers=1")
    assert r.returncode == 2, r.stdout
    assert f"problems: none of the {len(lines)} items of the train split gave a record (rejected: {reason})" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "manifest.json").exists()              # no "finished" dataset of 0 records


def test_a_sudoku_with_several_solutions_is_rejected_by_name(tmp_path, gen_cfg):
    problems = tmp_path / "s.jsonl"
    problems.write_text(f"{UNIQUE}\n{TWO_WAYS}\n")
    out, _ = pipeline.run(gen_cfg(tmp_path / "s", problems=str(problems), task=SUDOKU))
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": 1} and man["rejections"] == {"multiple_solutions": 1}


@pytest.mark.parametrize("grid, reason", [
    ("...4/..31/...2/.1..", None),                   # one solution
    ("..34/3412/..43/4321", "multiple_solutions"),   # two: the first two columns of rows 1 and 3 swap
    ("..../..../..../....", "multiple_solutions"),   # empty: 288
    ("1234/3412/2143/4321", None),                   # already full: one (the solver gives None for it)
])
def test_sudoku_check_page(grid, reason):
    assert sd.check_page({"size": 4, "grid": grid}, "") == reason
