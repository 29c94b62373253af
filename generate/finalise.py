"""Finalising, once every planned chunk exists: read the chunks in index order, drop the
rejected items and the repeats of an earlier puzzle, and write the first ``n`` records of each
split to ``OUT/<split>/shard-NNNNN.jsonl``; make more chunks if repeats left a split short.
Then the ``README.md`` dataset card and ``manifest.json`` (written last: its presence means
the dataset is complete).

Memory stays flat in ``n`` except for the set of 8-byte puzzle hashes used to find repeats
and the per-record lengths kept for percentiles (``generate.settings.RECORD_BYTES`` per record
of a split). Finalising records in ``.work/made.json`` what it is about to write, and
removes, on a resumed finalise, only that.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from typing import Optional

from generate import interop
from generate.settings import SIZE_KEYS, same_config_or_error
from generate.write import (atomic_write_lines, atomic_write_text, chunk_path, dataset_card, is_our_manifest,
                            manifest_dict, shard_path)
from solvers.config import ConfigError
from solvers.trace import MalformedTrace, collapse

DIVERSITY_SAMPLE = 2000  # records per split whose wording diversity is measured


class Finaliser:
    """The finalising half of ``generate.chunks.Generator``, mixed into it: it reads the
    Generator's settings, sizes, given puzzles, human traces and timing, and calls its
    ``plan`` and ``make_chunks`` for the top-up chunks a short split needs."""

    def human_rows(self, size: int) -> int:
        """How many human rows the train split gets: enough to make up ``human_ratio`` of it,
        or each human trace ``human_repeat`` times."""
        settings = self.settings
        if settings.human_ratio is not None:
            return round(settings.human_ratio * size / (1 - settings.human_ratio))
        return len(self.human) * settings.human_repeat

    def proposer_usage(self) -> dict:
        """Requests, tokens and estimated cost of the llm_search proposer, summed over every
        process that asked (this run's workers and those of an earlier, interrupted run)."""
        from generate.llm import PROPOSE_VERSION, usage_report
        return usage_report(self.settings.proposer, (self.settings.out / ".work" / "proposer").glob("usage-*.json"),
                            PROPOSE_VERSION)

    def llm_usage(self) -> Optional[dict]:
        """Requests, tokens and estimated cost of the LLM paraphraser, summed over every
        chunk of the dataset (made by this process or an earlier, interrupted one)."""
        if self.llm is None:
            return None
        from generate.llm import PROMPT_VERSION, usage_report
        return usage_report(self.llm.config, (self.settings.out / ".work").glob("*/*.llm.json"), PROMPT_VERSION)

    def finished(self, work_removed: bool = False) -> bool:
        """Whether OUT holds the finished dataset (of this config: another is an error).
        ``work_removed``: .work vanished under this run, which only finishing it explains."""
        manifest = self.settings.out / "manifest.json"
        if not manifest.exists():
            if work_removed:
                raise ConfigError("out", f"{self.settings.out / '.work'} was removed while this run was using it; "
                                  f"run again")
            return False
        if not is_our_manifest(manifest):
            raise ConfigError("out", f"{manifest} was not written by backspace; move it away and run again")
        same_config_or_error(json.loads(manifest.read_text())["fingerprint"], self.settings.fingerprint(),
                             self.settings.out)
        return True

    # The names finalising writes in OUT. Before it writes one it records it in
    # .work/made.json, so that a resumed finalise removes what an interrupted one left, and
    # nothing else: a train/ or README.md found there that this run did not make is an error.
    def final_names(self) -> list[str]:
        return [*self.sizes, "README.md", "manifest.json"]

    def made(self) -> list[str]:
        path = self.settings.out / ".work" / "made.json"
        return json.loads(path.read_text()) if path.exists() else []

    def check_final_names(self) -> None:
        made = self.made()
        foreign = [name for name in self.final_names()
                   if name not in made and os.path.lexists(self.settings.out / name)]
        if foreign:
            raise ConfigError("out", f"{', '.join(str(self.settings.out / n) for n in foreign)} "
                              f"{'is' if len(foreign) == 1 else 'are'} in the way and not written by this run; "
                              f"move {'it' if len(foreign) == 1 else 'them'} away and run again")

    def finalize(self) -> None:
        settings = self.settings
        t0 = time.perf_counter()
        self.check_final_names()
        atomic_write_text(settings.out / ".work" / "made.json", json.dumps(self.final_names()))
        report = {}
        for split, size in self.sizes.items():
            path = settings.out / split
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # left by an interrupted finalise of this run
            elif os.path.lexists(path):
                path.unlink()
            report[split] = self.finalize_split(split, size)
            if settings.layout != "seed":  # their loaders read a split as one JSON list (train.json)
                report[split].update(interop.write_list_file(settings.out, split, report[split]["shards"]))
        self.timing["finalize_s"] += time.perf_counter() - t0
        man = manifest_dict(settings, report, self.sizes)
        if self.contamination is not None:
            man["config"]["decontaminate"].update(self.contamination.summary())
        if self.llm is not None:
            man["llm"] = self.llm_usage()
        if settings.proposer is not None:
            man["proposer"] = self.proposer_usage()
        if self.human:
            rows = report["train"].get("human_rows", 0)
            man["human"] = {"dir": str(settings.human), "good_files": len(self.human), "rows": rows,
                            "share_of_train": round(rows / max(1, report["train"]["records"]), 4),
                            "mean_repeats": round(rows / len(self.human), 2), "ratio": settings.human_ratio,
                            "repeat": settings.human_repeat,
                            "bad_files": [{"file": n, "reason": r} for n, r in self.human_bad]}
        atomic_write_text(settings.out / "README.md", dataset_card(man, settings.out))
        atomic_write_text(settings.out / "manifest.json", json.dumps(man, indent=2, ensure_ascii=False))

    def finalize_split(self, split: str, size: int) -> dict:
        settings = self.settings
        seen: set[int] = set()
        rejections: dict[str, int] = {}
        acc = _StatsAccumulator()
        diversity = _Diversity()
        shards: list[str] = []
        buffer: list[str] = []
        items_used = 0

        def flush() -> None:
            path = shard_path(settings.out, split, len(shards))
            atomic_write_lines(path, iter(buffer))
            shards.append(str(path.relative_to(settings.out)))
            buffer.clear()

        planned = {start: stop for sp, start, stop in self.plan() if sp == split}
        # human traces go to train only, spread evenly between the synthetic records
        human_rows = self.human_rows(size) if split == "train" and self.human else 0
        mixed = 0

        def mix(upto: int) -> None:
            nonlocal mixed
            while mixed < upto:
                r = dict(self.human[mixed % len(self.human)])
                if mixed >= len(self.human):  # an upsampled copy
                    r["id"] = f"{r['id']}/copy{mixed // len(self.human)}"
                buffer.append(json.dumps(r, ensure_ascii=False))
                mixed += 1
                if len(buffer) == settings.shard_size:
                    flush()

        first_line: dict[int, int] = {}  # given problems: a puzzle's hash -> its first line

        start = 0
        while acc.count < size:
            if start in planned:
                stop, topup = planned[start], False
            elif self.problems is not None or self.traces is not None:
                break  # every given puzzle or trace is used
            else:  # top-up for rejected and repeated items: the shortfall and a quarter more
                stop, topup = start + min(settings.shard_size, max(64, (size - acc.count) * 5 // 4)), True
            path = chunk_path(settings.out, split, start, stop)
            self.make_chunks([(split, start, stop)])
            before = acc.count
            with open(path, encoding="utf-8") as f:
                for idx, line in enumerate(f, start):
                    if acc.count >= size:
                        break
                    items_used += 1
                    meta_text, record = line.rstrip("\n").split("\t", 1)
                    meta = json.loads(meta_text)
                    if meta["reject"]:
                        rejections[meta["reject"]] = rejections.get(meta["reject"], 0) + 1
                        continue
                    h = int.from_bytes(hashlib.blake2b(meta["key"].encode(), digest_size=8).digest(), "big")
                    if h in seen:
                        rejections["duplicate"] = rejections.get("duplicate", 0) + 1
                        if self.problems is not None:
                            print(f"problems: {settings.problems}:{self.problem_lines[idx]}: dropped, the same "
                                  f"puzzle as line {first_line[h]}", file=sys.stderr)
                        continue
                    seen.add(h)
                    if self.problems is not None:
                        first_line[h] = self.problem_lines[idx]
                    acc.add(meta["stats"])
                    if acc.count <= DIVERSITY_SAMPLE and not record.startswith("["):
                        diversity.add(json.loads(record).get("Reasoning", ""))
                    for row in interop.rows(record):  # self_backtracking: several samples per puzzle
                        buffer.append(row)
                        if len(buffer) == settings.shard_size:
                            flush()
                    if human_rows:
                        mix(human_rows * acc.count // size)
            if topup and acc.count == before:
                why = ", ".join(f"{k} {v}" for k, v in sorted(rejections.items(), key=lambda kv: -kv[1]))
                if max(rejections, key=rejections.get, default="duplicate") == "duplicate":
                    raise ConfigError(
                        f"n ({split})", f"the {split} split ran out of distinct puzzles after {acc.count} "
                        f"records and {items_used} items; ask for fewer records or widen the task's ranges")
                raise ConfigError(f"n ({split})", f"{stop - start} more items of the {split} split gave no record "
                                  f"({acc.count} records so far; rejected: {why}); see the reasons in "
                                  f"generate/validate.py and the paraphraser's messages above")
            start = stop
        if not acc.count and size:  # every given puzzle or trace was rejected
            key = "problems" if self.problems is not None else "traces" if self.traces is not None else SIZE_KEYS[split]
            why = ", ".join(f"{k} {v}" for k, v in sorted(rejections.items(), key=lambda kv: -kv[1]))
            raise ConfigError(key, f"none of the {items_used} items of the {split} split gave a record "
                              f"(rejected: {why or 'none'}); see the reasons in generate/validate.py")
        if human_rows:
            mix(human_rows)
        if buffer or not shards:
            flush()
        extra = {"human_rows": human_rows} if human_rows else {}
        return {"records": acc.count + human_rows, **extra, "items_used": items_used, "shards": shards,
                "rejections": dict(sorted(rejections.items())),
                "stats": {**acc.summary(), **diversity.summary()}}


class _Diversity:
    """Distinct n-gram ratios of the kept text (distinct-n: distinct word n-grams over all
    word n-grams, Li et al. 2016) over the first ``DIVERSITY_SAMPLE`` records of a split, so
    that template and LLM wording can be compared. Low values: repetitive wording."""

    def __init__(self) -> None:
        self.grams = {n: [set(), 0] for n in (1, 2, 3)}

    def add(self, reasoning: str) -> None:
        try:
            words = collapse(reasoning).split()
        except MalformedTrace:
            return
        for n, g in self.grams.items():
            for i in range(len(words) - n + 1):
                g[0].add(tuple(words[i:i + n]))
            g[1] += max(0, len(words) - n + 1)

    def summary(self) -> dict:
        return {f"distinct_{n}": round(len(g[0]) / g[1], 4) for n, g in self.grams.items() if g[1]}


class _StatsAccumulator:
    def __init__(self) -> None:
        self.count = 0
        self.chars: list[int] = []
        self.with_backspaces = 0
        self.sums = {"backspaces": 0, "steps": 0, "abandoned_steps": 0}

    def add(self, st: dict) -> None:
        self.count += 1
        self.chars.append(st["characters"])
        self.with_backspaces += st["abandoned_steps"] > 0
        for k in self.sums:
            self.sums[k] += st[k]

    def summary(self) -> dict:
        if not self.count:
            return {}
        chars = sorted(self.chars)
        return {
            "characters_mean": round(statistics.fmean(chars), 1),
            "characters_p50": chars[len(chars) // 2],
            "characters_p95": chars[min(len(chars) - 1, int(0.95 * len(chars)))],
            "characters_max": chars[-1],
            "with_abandoned_steps": round(self.with_backspaces / self.count, 4),
            **{f"{k}_mean": round(v / self.count, 2) for k, v in self.sums.items()},
        }
