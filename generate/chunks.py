"""The resumable chunk runner. Work is cut into chunks of ``shard_size`` item indices per
split; each chunk goes to ``OUT/.work/<split>/chunk-NNNNN.jsonl``, written to a temporary file
and renamed when complete, so an interrupted run resumes from the chunks it has.
``shard=i num_shards=k`` makes every k-th chunk, for runs on several processes or machines
sharing OUT; the run that makes the last chunk finalises (``generate.finalise``).

OUT is written only when it is missing, empty, or a dataset of this project (its
manifest.json, or the .work/ of an unfinished run); ``/``, the home folder and the repository
never (``generate.write.check_out``). A run holds ``OUT/.work/run.lock`` (one per shard of a
sharded run) from start to end, so a second run of it fails at once naming the first; the
lock of a killed run is taken over.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from generate import interop
from generate.finalise import Finaliser
from generate.items import Items, read_problems
from generate.settings import Settings, hydra_output, same_config_or_error
from generate.write import (Mutex, RunLock, atomic_write_lines, atomic_write_text, check_out, chunk_path,
                            is_our_manifest, remove_work)
from solvers.config import ConfigError


class Generator(Finaliser):
    """Makes the chunks of a dataset (those of its shard), under the run lock, and finalises
    it (``Finaliser``) once every planned chunk exists."""

    def __init__(self, settings: Settings, on_chunk: Optional[Callable[[str, int], None]] = None) -> None:
        self.settings = settings
        self.on_chunk = on_chunk  # called after each chunk is written (tests interrupt here)
        self.problem_lines: list[int] = []  # each given puzzle's line in the problems file
        self.problems = None
        if settings.problems:
            self.problems = read_problems(settings.problems, settings.module, self.problem_lines)
        self.traces = None
        if settings.traces:
            self.traces = interop.read_traces(settings.traces, settings.traces_layout,
                                              skip_bad=settings.on_bad_trace == "skip")
        given = self.problems if self.problems is not None else self.traces
        if given is not None:
            self.sizes = {settings.problems_split: len(given)}
        else:
            self.sizes = dict(settings.sizes)
        contamination = None
        if settings.decontaminate:
            from generate.decontaminate import Contamination
            contamination = Contamination.from_file(settings.decontaminate, settings.module,
                                                    settings.decontaminate_ngram)
        self.contamination = contamination
        self.items = Items(settings, self.problems, self.traces, contamination)
        self.human, self.human_bad = [], []
        if settings.human is not None:
            from generate.human import read_folder
            self.human, self.human_bad = read_folder(settings.human, settings.max_chars)
            for name, reason in self.human_bad:
                print(f"human trace skipped: {settings.human / name}: {reason}")
            if not self.human:
                raise ConfigError("human", f"{settings.human} holds no good human traces ({len(self.human_bad)} bad)")
        self.llm = None
        if settings.llm is not None:
            from generate import fidelity, llm
            self.llm = llm.Paraphraser(settings.llm, fidelity.check)
        self.timing = {"generate_s": 0.0, "finalize_s": 0.0, "items": 0}

    # Planned chunks: enough item indices for every split's size if nothing were
    # rejected. A chunk is a range of indices [start, stop), at most shard_size long.
    def plan(self) -> list[tuple[str, int, int]]:
        return [(split, start, min(start + self.settings.shard_size, size))
                for split, size in self.sizes.items()
                for start in range(0, size, self.settings.shard_size)]

    def make_chunks(self, chunks: list[tuple[str, int]]) -> None:
        todo = [ch for ch in chunks if not chunk_path(self.settings.out, *ch).exists()]
        if not todo:
            return
        t0 = time.perf_counter()
        total = sum(stop - start for _, start, stop in todo)
        bar = tqdm(total=total, unit="item", desc="generate", disable=not self.settings.progress,
                   mininterval=1.0, smoothing=0.1)
        pool = None
        if self.settings.workers > 1:
            pool = multiprocessing.get_context("fork").Pool(
                self.settings.workers, initializer=_init_worker, initargs=(self.items,))
        try:
            for split, start, stop in todo:
                indices = range(start, stop)
                path = chunk_path(self.settings.out, split, start, stop)
                if self.llm is not None:
                    lines = self._llm_chunk(split, indices, pool, path)
                elif pool is None:
                    lines = (self.items(split, i) for i in indices)
                else:
                    lines = pool.imap(partial(_work, split), indices, chunksize=64)
                atomic_write_lines(path, _counting(lines, bar))
                self.timing["items"] += len(indices)
                if self.on_chunk is not None:
                    self.on_chunk(split, start)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        self.timing["generate_s"] += time.perf_counter() - t0

    def _llm_chunk(self, split: str, indices: range, pool, path: Path) -> list[str]:
        """A chunk through an LLM paraphraser: solve in the workers, paraphrase every trace
        of the chunk concurrently (or as one batch), then render and validate here. The
        chunk's token usage is saved next to it for the manifest."""
        from generate.llm import Job
        if pool is None:
            prepared = [self.items.prepare(split, i) for i in indices]
        else:
            prepared = list(pool.imap(partial(_prepare, split), indices, chunksize=64))
        jobs = [Job(self.items.plain_steps(ev) if ev is not None and not reason else [])
                for _, ev, reason in prepared]
        before = dataclasses.replace(self.llm.usage)
        self.llm.run(jobs, batch_file=path.with_name(path.stem + ".batch.json"))
        used = dataclasses.replace(self.llm.usage)
        for f in dataclasses.fields(used):
            setattr(used, f.name, getattr(used, f.name) - getattr(before, f.name))
        atomic_write_text(path.with_name(path.stem + ".llm.json"), json.dumps(used.as_dict()))
        lines = []
        for i, (puzzle, events, reason), job in zip(indices, prepared, jobs):
            if events is not None and not reason and job.result is None:
                reason = job.reason or "paraphrase_failed"
            lines.append(self.items.finish(split, i, puzzle, events, reason, steps=job.result))
        return lines

    def run(self) -> Path:
        """Make the dataset in OUT, or the part of it that this shard makes. OUT was checked
        by ``settings`` (``check_out``); a ``RunLock`` keeps a second run of the same shard
        out, and the ``Mutex`` orders the processes of a sharded run."""
        settings = self.settings
        check_out(settings.out, hydra_output())  # again: the folder may have changed since the config was checked
        if self.finished():
            return settings.out
        work = settings.out / ".work"
        work.mkdir(parents=True, exist_ok=True)
        lock = RunLock(work, settings.shard, settings.num_shards)
        if not lock.acquire(settings.out) and self.finished(work_removed=True):  # finished meanwhile
            return settings.out
        try:
            with Mutex(work) as held:
                if self.finished(work_removed=not held):  # finished by another run meanwhile
                    return settings.out
                fp_file = work / "fingerprint.json"
                if fp_file.exists():
                    same_config_or_error(json.loads(fp_file.read_text()), settings.fingerprint(), settings.out)
                else:
                    atomic_write_text(fp_file, json.dumps(settings.fingerprint(), indent=1))
                self.check_final_names()
            plan = self.plan()
            mine = [ch for k, ch in enumerate(plan) if k % settings.num_shards == settings.shard]
            self.make_chunks(mine)
            with Mutex(work) as held:
                if self.finished(work_removed=not held):  # another shard's process finished it meanwhile
                    return settings.out
                missing = [ch for ch in plan if not chunk_path(settings.out, *ch).exists()]
                if missing:
                    print(f"shard {settings.shard}/{settings.num_shards}: my chunks are done; {len(missing)} chunk(s) "
                          f"of other shards are missing, so {settings.out} is not finalised yet. The run "
                          f"that makes the last chunk finalises it.")
                    return settings.out
                self.finalize()
            return settings.out
        finally:
            if is_our_manifest(settings.out / "manifest.json"):  # finished, by this run or another
                remove_work(work, lock)
            lock.release()


def _counting(lines, bar):
    for line in lines:
        bar.update(1)
        yield line


# The pool's workers: each is handed the Items once, when it starts (forked).
_ITEMS: Optional[Items] = None


def _init_worker(items: Items) -> None:
    global _ITEMS
    _ITEMS = items


def _work(split: str, idx: int) -> str:
    return _ITEMS(split, idx)


def _prepare(split: str, idx: int) -> tuple:
    return _ITEMS.prepare(split, idx)

