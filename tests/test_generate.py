"""The generation pipeline end to end: files, determinism, splits, resume, shards, bad input."""

import json
from pathlib import Path

import pytest

from generate import pipeline
from generate.validate import check
from solvers import countdown as cd
from solvers.trace import BACKSPACE, collapse


def records(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for f in sorted((out / split).glob("shard-*.jsonl")) for line in open(f)]


def shard_bytes(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/shard-*.jsonl"))}


def test_cli_writes_a_dataset_that_verifies(tmp_path, cli):
    out = tmp_path / "cd"
    r = cli("n=300", "n_val=40", "n_test=40", f"out={out}", "progress=false")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(out)  # the last line is the path
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": 300, "val": 40, "test": 40}
    assert man["config"]["task"]["n_numbers"] == 4 and man["version"]
    assert (out / "README.md").read_text().startswith(f"# {out.name}")
    assert not (out / ".work").exists()
    train = records(out, "train")
    assert len(train) == 300
    with_backspaces = 0
    for rec in train:
        assert set(rec) >= {"Question", "Answer", "Reasoning", "id", "task", "split", "style",
                            "source", "puzzle", "stats"}
        page = collapse(rec["Reasoning"])
        assert page.splitlines()[-1] == f"Answer: {rec['Answer']}"
        assert cd.verify(rec["puzzle"], rec["Answer"])           # each number once, hits the target
        assert check(rec, cd, 2048) is None
        assert rec["source"] == "synthetic" and rec["style"] == "backspace" and rec["split"] == "train"
        with_backspaces += BACKSPACE in rec["Reasoning"]
    assert with_backspaces >= len(train) / 2


def test_loads_with_datasets(tmp_path, gen_cfg):
    from datasets import load_dataset
    out, _ = pipeline.run(gen_cfg(tmp_path / "d", n=50, n_val=10, n_test=10))
    ds = load_dataset("json", data_files={s: str(out / s / "*.jsonl") for s in ("train", "val", "test")},
                      cache_dir=str(tmp_path / "cache"))
    assert ds["train"].num_rows == 50 and ds["test"].num_rows == 10
    assert BACKSPACE in "".join(ds["train"]["Reasoning"])


def test_same_config_same_bytes_whatever_the_workers(tmp_path, gen_cfg):
    a, _ = pipeline.run(gen_cfg(tmp_path / "a", n=400, shard_size=150))
    b, _ = pipeline.run(gen_cfg(tmp_path / "b", n=400, shard_size=150, workers=2))
    assert shard_bytes(a) == shard_bytes(b)
    assert len(shard_bytes(a)) == 3 + 2 + 2   # 400 train in 150s, 200 val and test in 150s
    c, _ = pipeline.run(gen_cfg(tmp_path / "c", n=400, shard_size=150, seed=1))
    assert shard_bytes(a) != shard_bytes(c)


def test_splits_are_disjoint_by_content_across_seeds(tmp_path, gen_cfg):
    keys = {}
    for seed in (0, 1):
        out, _ = pipeline.run(gen_cfg(tmp_path / f"s{seed}", n=300, n_val=40, n_test=40, seed=seed, task={
            "name": "countdown", "n_numbers": 3, "numbers_min": 1, "numbers_max": 10,
            "target_min": 10, "target_max": 30, "heuristic": "closest", "max_steps": 20,
            "holdout_targets": []}))
        for split in ("train", "val", "test"):
            ks = [cd.puzzle_key(r["puzzle"]) for r in records(out, split)]
            assert len(ks) == len(set(ks)), f"repeats within {split}"
            keys.setdefault(split, set()).update(ks)
        man = json.loads((out / "manifest.json").read_text())
        assert man["rejections"].get("duplicate", 0) > 0  # a small space: repeats were dropped
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]


def test_heldout_targets_only_in_test_unseen(tmp_path, gen_cfg):
    task = {"name": "countdown", "n_numbers": 3, "numbers_min": 1, "numbers_max": 25, "target_min": 10,
            "target_max": 100, "heuristic": "closest", "max_steps": 20, "holdout_targets": [24, 36]}
    out, _ = pipeline.run(gen_cfg(tmp_path / "h", n=300, n_test_unseen=30, task=task))
    assert {r["puzzle"]["target"] for r in records(out, "test_unseen")} <= {24, 36}
    assert len(records(out, "test_unseen")) == 30
    for split in ("train", "val", "test"):
        assert not {r["puzzle"]["target"] for r in records(out, split)} & {24, 36}


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_without_redoing_finished_chunks(tmp_path, gen_cfg):
    cfg = gen_cfg(tmp_path / "r", n=500, n_val=0, n_test=0, shard_size=100)
    made = []

    def stop_after_two(split, start):
        made.append(start)
        if len(made) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        pipeline.run(cfg, on_chunk=stop_after_two)
    out = Path(cfg["out"])
    assert not (out / "manifest.json").exists()  # nothing half-written looks complete
    assert len(list((out / ".work" / "train").glob("chunk-*.jsonl"))) == 2
    resumed = []
    pipeline.run(cfg, on_chunk=lambda split, start: resumed.append(start))
    # only what was missing (and, past 500, a top-up for the repeats that were dropped)
    assert [start for start in resumed if start < 500] == [200, 300, 400]
    fresh, _ = pipeline.run(gen_cfg(tmp_path / "fresh", n=500, n_val=0, n_test=0, shard_size=100))
    assert shard_bytes(out) == shard_bytes(fresh)
    # once complete, running again changes nothing and makes nothing
    again = []
    pipeline.run(cfg, on_chunk=lambda split, start: again.append(start))
    assert again == []


def test_shards_in_separate_processes_make_the_single_run_dataset(tmp_path, cli, gen_cfg):
    out = tmp_path / "sharded"
    r = cli("-m", "n=600", "n_val=0", "n_test=0", "shard_size=100", f"out={out}", "progress=false",
            "shard=0,1,2", "num_shards=3", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert r.returncode == 0, r.stderr
    assert "not finalised yet" in r.stdout            # the first shards wait for the last
    single, _ = pipeline.run(gen_cfg(tmp_path / "single", n=600, n_val=0, n_test=0, shard_size=100))
    assert shard_bytes(out) == shard_bytes(single)


def test_problems_file(tmp_path, gen_cfg):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"numbers": [10, 18, 10, 9], "target": 47}\n\n'
                        '{"numbers": [1, 1, 1], "target": 97}\n'        # no solution
                        '{"numbers": [9, 10, 18, 10], "target": 47}\n')  # the first one again
    out, _ = pipeline.run(gen_cfg(tmp_path / "p", problems=str(problems)))
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"] == {"train": 1}
    assert man["rejections"] == {"duplicate": 1, "no_solution": 1}  # proved: not "unsolved"
    (rec,) = records(out, "train")
    assert rec["puzzle"] == {"numbers": [10, 18, 10, 9], "target": 47}
    assert rec["id"] == "countdown/train/0/0"


@pytest.mark.parametrize("args, message", [
    (["n=-5"], "n: must be >= 0, got -5"),
    (["task=sudokuu"], "task"),                                 # Hydra names the group and options
    (["task.n_numbers=1"], "task.n_numbers: must be 3 to 6, got 1"),
    (["style=fancy"], "style: must be one of backspace, backtrack_token, search, direct"),
    (["task.colour=3"], "colour"),
    (["workers=0"], "workers: must be >= 1"),
    (["problems=/nonexistent.jsonl"], "problems: no such file"),
])
def test_bad_config_exits_nonzero_with_one_clear_message(tmp_path, cli, args, message):
    out = tmp_path / "bad"
    r = cli(*args, f"out={out}", "progress=false")
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("content, message", [
    ('{"numbers": [1, 2, 3], "target": 6}\n{"numbers": [1, 2], "target": 3\n', "p.jsonl:2: not valid JSON"),
    ('{"numbers": [1, 2, 3], "target": 6}\n\n{"numbers": [1, 2, 3], "target": "6"}\n',
     "p.jsonl:3: 'target' must be a positive integer"),
    ('{"numbers": [1, 2, 3]}\n', "p.jsonl:1: 'target'"),
    ("\n", "holds no puzzles"),
])
def test_malformed_problems_file_names_the_line(tmp_path, cli, content, message):
    problems = tmp_path / "p.jsonl"
    problems.write_text(content)
    out = tmp_path / "bad"
    r = cli(f"problems={problems}", f"out={out}", "progress=false")
    assert r.returncode == 2
    assert message in r.stderr
    assert not out.exists()


def test_existing_output_of_another_config_is_not_overwritten(tmp_path, gen_cfg):
    out, _ = pipeline.run(gen_cfg(tmp_path / "x", n=30, n_val=0, n_test=0))
    before = shard_bytes(out)
    with pytest.raises(pipeline.ConfigError, match="differs in: seed"):
        pipeline.run(gen_cfg(tmp_path / "x", n=30, n_val=0, n_test=0, seed=3))
    assert shard_bytes(out) == before


@pytest.mark.parametrize("style", ["backspace", "backtrack_token", "search", "direct"])
def test_every_style_validates_and_keeps_the_same_puzzles(tmp_path, gen_cfg, style):
    out, _ = pipeline.run(gen_cfg(tmp_path / style, n=60, n_val=0, n_test=0, style=style))
    recs = records(out, "train")
    base, _ = pipeline.run(gen_cfg(tmp_path / "base", n=60, n_val=0, n_test=0, style="direct"))
    assert [r["puzzle"] for r in recs] == [r["puzzle"] for r in records(base, "train")]
    for rec in recs:
        assert check(rec, cd, 2048) is None
        if style in ("backspace", "backtrack_token"):
            direct = [r for r in records(base, "train") if r["puzzle"] == rec["puzzle"]][0]
            assert collapse(rec["Reasoning"]) == direct["Reasoning"]
