"""make bench: how fast validated 4-number Countdown records are made on this machine.

Prints, for the default config (4 numbers, style backspace, template paraphraser):
  1. time per stage per record, single process;
  2. validated records per second through the pipeline, one worker and all workers;
  3. the whole `python -m generate task=countdown n=20000` command, start-up included;
  4. for every registered task, validated records per second through the pipeline with all
     workers, default task config, plain and with every variant on (mix, notes, think, slips).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generate import paraphrase, pipeline, validate
from generate.splits import item_rng
from solvers.config import ConfigError
from solvers.trace import render

ROOT = Path(__file__).resolve().parents[1]


def cfg(out: Path, **overrides) -> dict:
    """The ``python -m generate`` config (its task group comes from conf/__init__.py's
    ConfigStore, so it is composed through ``conf.compose_generate``) with ``overrides``."""
    from conf import compose_generate

    c = compose_generate([f"out={out}", "progress=false"])
    c.pop("hydra", None)
    c.update(overrides)
    return c


def stages(n: int = 3000) -> None:
    s = pipeline.settings(cfg(Path("/nonexistent"), workers=1))
    items = pipeline.Items(s)
    task = s.module
    t = dict.fromkeys(("sample", "solve", "paraphrase", "render", "validate", "json"), 0.0)
    clock = time.perf_counter
    for idx in range(n):
        rng = item_rng(s.task, "train", s.seed, idx)
        while True:
            t0 = clock()
            puzzle = task.sample(s.task_config, rng)
            same = items.content_split(puzzle) == "train"
            t1 = clock()
            t["sample"] += t1 - t0
            if not same:
                continue
            events = task.solve(puzzle, s.task_config, rng)
            t["solve"] += clock() - t1
            if events is not None:
                break
        t0 = clock()
        words = paraphrase.words(task, events, s.paraphraser, item_rng(s.task, "train", s.seed, idx, "/words"))
        t1 = clock()
        text = render(events, words, s.style)
        t2 = clock()
        record = {"Question": task.question(puzzle), "Answer": events[-1].value, "Reasoning": text,
                  "puzzle": puzzle, "split": "train"}
        assert validate.check(record, task, s.max_chars, items.content_split) is None
        t3 = clock()
        json.dumps(record, ensure_ascii=False)
        t4 = clock()
        t["paraphrase"] += t1 - t0
        t["render"] += t2 - t1
        t["validate"] += t3 - t2
        t["json"] += t4 - t3
    total = sum(t.values())
    print(f"time per stage, single process, {n} records (microseconds per record):")
    for stage, seconds in t.items():
        print(f"  {stage:<11} {1e6 * seconds / n:8.1f}   {100 * seconds / total:5.1f}%")
    print(f"  {'total':<11} {1e6 * total / n:8.1f}   -> {n / total:.0f} records/s")


def pipeline_rate(workers: int, n: int = 20000) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        c = cfg(Path(tmp) / "d", n=n, n_val=0, n_test=0, workers=workers)
        t0 = time.perf_counter()
        out, _ = pipeline.run(c)
        elapsed = time.perf_counter() - t0
        records = sum(json.loads((out / "manifest.json").read_text())["counts"].values())
    return records / elapsed


def whole_command(n: int = 20000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "d"
        cmd = [sys.executable, "-m", "generate", "task=countdown", f"n={n}", f"out={out}", "progress=false",
               f"hydra.run.dir={tmp}/hydra"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        elapsed = time.perf_counter() - t0
        counts = json.loads((out / "manifest.json").read_text())["counts"]
    records = sum(counts.values())
    print(f"whole command: python -m generate task=countdown n={n} -> {records} validated records "
          f"({counts}) in {elapsed:.2f} s = {records / elapsed:.0f} records/s")


# Tasks measured on fewer records: task=program runs every record's programs in the sandbox
# (about 10 records/s on 2 cores), so 5,000 would take minutes per line.
FEWER = {"program": 300}


def per_task(n: int = 5000) -> None:
    """Every registered task; one that cannot run here (llm_search needs an LLM proposer) or
    cannot fill ``n`` (equation24 has a few hundred puzzles) says why in its line."""
    from solvers import TASKS
    cores = len(os.sched_getaffinity(0))
    print(f"every task, style backspace, paraphraser template, {cores} workers, n={n} train records "
          f"({', '.join(f'{k}: {v}' for k, v in FEWER.items())}):")
    for name in TASKS:
        for label, variants in (("plain", {}), ("variants", {"mix": True, "notes": True, "think": 0.2,
                                                              "slips": 0.2})):
            with tempfile.TemporaryDirectory() as tmp:
                c = cfg(Path(tmp) / "d", n=min(n, FEWER.get(name, n)), n_val=0, n_test=0, workers=cores,
                        **variants)
                c["task"] = {"name": name}
                t0 = time.perf_counter()
                try:
                    out, _ = pipeline.run(c)
                except ConfigError as e:  # equation24: a few hundred distinct puzzles in all
                    print(f"  {name:<10} {label:<8} not measured: {e}")
                    continue
                elapsed = time.perf_counter() - t0
                man = json.loads((out / "manifest.json").read_text())
            st = man["splits"]["train"]["stats"]
            print(f"  {name:<10} {label:<8} {man['counts']['train'] / elapsed:7.0f} records/s  "
                  f"chars mean {st['characters_mean']:7.1f} p95 {st['characters_p95']:5}  "
                  f"abandoned steps in {100 * st['with_abandoned_steps']:5.1f}%  "
                  f"rejected {sum(man['rejections'].values())}")


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    print(f"backspace generate benchmark: 4-number Countdown, style backspace, paraphraser template, "
          f"{cores} cores")
    stages()
    print(f"pipeline, 1 worker:   {pipeline_rate(1):.0f} validated records/s (n=20000)")
    print(f"pipeline, {cores} workers:  {pipeline_rate(cores):.0f} validated records/s (n=20000)")
    whole_command()
    per_task()


if __name__ == "__main__":
    main()
