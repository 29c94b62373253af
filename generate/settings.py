"""The generate config, checked in one place: ``settings(cfg) -> Settings``, or a ConfigError
naming the first bad key. Also what a run's records depend on (``Settings.fingerprint``,
with digests of the input files), and the refusal of a size whose bookkeeping would not fit
in memory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from generate import interop, paraphrase
from generate.splits import HELDOUT_SPLIT
from generate.write import check_out, dataset_state, package_version
from solvers import TASKS
from solvers.config import ConfigError, build, check_choice, check_int_range
from solvers.trace import STYLES

SPLITS = ("train", "val", "test")


@dataclass
class Settings:
    """The generate config, checked. Built from the Hydra config by ``settings``."""
    task: str
    task_config: Any
    style: str = "backspace"
    paraphraser: str = "template"
    seed: int = 0
    sizes: dict = field(default_factory=dict)  # split -> records wanted
    out: Path = Path("data/generated/out")
    problems: Optional[Path] = None
    problems_split: str = "train"
    max_chars: int = 2048
    split_weights: dict = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    workers: int = 1
    shard: int = 0
    num_shards: int = 1
    shard_size: int = 10_000
    progress: bool = True
    mix: bool = False         # a heuristic drawn per item from the task's HEURISTICS
    think: float = 0.0        # chance that a non-final step is left implicit
    notes: bool = False       # a kept note after each erased dead end
    slips: float = 0.0        # chance that a step is first written with a slip, erased, corrected
    layout: str = "seed"      # record layout written: seed | self_backtracking | stream_of_search
    traces: Optional[Path] = None        # a file of searches in an external layout, imported
    traces_layout: str = "self_backtracking"
    on_bad_trace: str = "error"          # error | skip: a trace that cannot be converted
    decontaminate: Optional[Path] = None  # puzzles or questions that must not appear
    decontaminate_ngram: int = 13
    llm: Any = None                      # generate.llm.LLMConfig of an LLM paraphraser
    proposer: Any = None                 # generate.llm.ProposerConfig: the LLM a PROPOSES task (llm_search) asks
    human: Optional[Path] = None         # a folder of seed-format human traces mixed into train
    human_ratio: Optional[float] = None  # share of train rows that are human (upsampled to reach it)
    human_repeat: int = 1                # or: each human trace this many times

    @property
    def module(self):
        return TASKS[self.task]

    def fingerprint(self) -> dict:
        """What the records depend on. A run resumes only into an OUT made with the same."""
        return {
            "version": package_version(),
            "task": self.task,
            "task_config": dataclasses.asdict(self.task_config),
            "style": self.style,
            "paraphraser": self.llm.fingerprint() if self.llm is not None else self.paraphraser,
            "seed": self.seed,
            "sizes": self.sizes,
            "problems": _file_digest(self.problems) if self.problems else None,
            "problems_split": self.problems_split if self.problems or self.traces else None,
            "traces": _file_digest(self.traces) if self.traces else None,
            "traces_layout": self.traces_layout if self.traces else None,
            "on_bad_trace": self.on_bad_trace if self.traces else None,
            "layout": self.layout,
            "decontaminate": _file_digest(self.decontaminate) if self.decontaminate else None,
            "decontaminate_ngram": self.decontaminate_ngram if self.decontaminate else None,
            "human": _folder_digest(self.human) if self.human else None,
            "human_mix": [self.human_ratio, self.human_repeat] if self.human else None,
            "max_chars": self.max_chars,
            "split_weights": self.split_weights,
            "shard_size": self.shard_size,
            "variants": self.variants(),
            **({"proposer": self.proposer.fingerprint()} if self.proposer is not None else {}),
        }

    def variants(self) -> dict:
        return {"mix": self.mix, "think": self.think, "notes": self.notes, "slips": self.slips}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _folder_digest(folder: Path) -> str:
    from generate.human import folder_digest  # reads no FIFO, device or symlink out of the folder
    return folder_digest(folder)


def settings(cfg: dict) -> Settings:
    """Check a resolved generate config; raise ConfigError naming the first bad key."""
    task_cfg = dict(cfg.get("task") or {})
    name = task_cfg.pop("name", None)
    check_choice("task", name, TASKS)
    task_config = build(TASKS[name].Config, task_cfg, "task")
    check_choice("style", cfg.get("style"), STYLES)
    para = (cfg.get("paraphraser") or {}).get("name")
    check_choice("paraphraser", para, paraphrase.PARAPHRASERS)
    llm_cfg = None
    if para in paraphrase.LLM_PARAPHRASERS:
        from generate.llm import llm_config
        llm_cfg = llm_config(dict(cfg["paraphraser"]))
        llm_cfg.api_key()  # a missing key is an error now, not after the first chunk
    proposer_cfg = None
    if TASKS[name].PROPOSES:  # llm_search: an LLM proposes the steps of given questions
        from generate.llm import PROVIDERS, proposer_config
        prop = dict(cfg.get("proposer") or {})
        if prop.get("name") not in PROVIDERS:
            raise ConfigError("proposer", f"task={name} needs proposer={'|'.join(PROVIDERS)} "
                              f"(conf/proposer/*.yaml); got {prop.get('name')!r}")
        proposer_cfg = proposer_config(prop)
        proposer_cfg.api_key()
        if cfg.get("problems") is None:
            TASKS[name].sample(task_config, None)  # raises ConfigError("problems", ...): no generator
    for key in ("n", "n_val", "n_test", "n_test_unseen"):
        check_int_range(key, cfg.get(key), 0)
    check_int_range("seed", cfg.get("seed"), 0)
    check_int_range("max_chars", cfg.get("max_chars"), 1)
    check_int_range("shard_size", cfg.get("shard_size"), 1)
    check_int_range("num_shards", cfg.get("num_shards"), 1)
    check_int_range("shard", cfg.get("shard"), 0, cfg["num_shards"] - 1)
    workers = cfg.get("workers")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    check_int_range("workers", workers, 1)
    out = cfg.get("out")
    if not out or not isinstance(out, str):
        raise ConfigError("out", "must be the path of the output directory")
    check_out(Path(out), hydra_output())
    weights = dict(cfg.get("split_weights") or {})
    for split, w in weights.items():
        check_choice("split_weights", split, SPLITS)
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            raise ConfigError(f"split_weights.{split}", f"must be a number >= 0, got {w!r}")

    variants = {"mix": cfg.get("mix", False), "notes": cfg.get("notes", False),
                "think": cfg.get("think", 0.0), "slips": cfg.get("slips", 0.0)}
    for key in ("mix", "notes"):
        if not isinstance(variants[key], bool):
            raise ConfigError(key, f"must be true or false, got {variants[key]!r}")
    for key in ("think", "slips"):
        p = variants[key]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(key, f"must be a probability from 0 to 1, got {p!r}")
        variants[key] = float(p)

    layout = cfg.get("layout", "seed")
    check_choice("layout", layout, interop.LAYOUTS)
    if layout != "seed" and name not in interop.EXTERNAL_TASKS:
        raise ConfigError("layout", f"the {layout} layout is defined for task "
                          f"{' or '.join(interop.EXTERNAL_TASKS)} only, not {name}")
    files = {}
    for key in ("problems", "traces", "decontaminate"):
        if cfg.get(key) is not None:
            files[key] = Path(cfg[key])
            if not files[key].is_file():
                raise ConfigError(key, f"no such file: {files[key]}")
    if "problems" in files and "traces" in files:
        raise ConfigError("traces", "give problems=FILE (puzzles to solve) or traces=FILE (searches to import), not both")
    traces_layout = cfg.get("traces_layout", "self_backtracking")
    on_bad_trace = cfg.get("on_bad_trace", "error")
    if "traces" in files:
        check_choice("traces_layout", traces_layout, interop.LAYOUTS[1:])
        check_choice("on_bad_trace", on_bad_trace, ("error", "skip"))
        if name not in interop.EXTERNAL_TASKS:
            raise ConfigError("traces", f"imported traces are {' or '.join(interop.EXTERNAL_TASKS)} searches; "
                              f"set task={interop.EXTERNAL_TASKS[0]}")
    ngram = cfg.get("decontaminate_ngram", 13)
    check_int_range("decontaminate_ngram", ngram, 1)
    human = cfg.get("human")
    if human is not None:
        from generate.human import folder_problem  # lazily, as _folder_digest does

        if not isinstance(human, str):
            raise ConfigError("human", f"must be the path of a folder of human traces, got {human!r}")
        human = Path(human)
        problem = folder_problem(human)  # missing, a file, or not listable (permissions): before any work
        if problem:
            raise ConfigError("human", problem)
    ratio = cfg.get("human_ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1):
        raise ConfigError("human_ratio", f"must be a share from 0 to below 1 (or null), got {ratio!r}")
    check_int_range("human_repeat", cfg.get("human_repeat", 1), 1)

    problems = files.get("problems") or files.get("traces")
    if problems is not None:
        check_choice("problems_split", cfg.get("problems_split"), SPLITS + (HELDOUT_SPLIT,))
        sizes = {}
    else:
        sizes = {"train": cfg["n"], "val": cfg["n_val"], "test": cfg["n_test"]}
        if getattr(task_config, "holdout_targets", None):
            sizes[HELDOUT_SPLIT] = cfg["n_test_unseen"]
        sizes = {s: k for s, k in sizes.items() if k > 0}
        for split in sizes:
            if split != HELDOUT_SPLIT and weights.get(split, 0) <= 0:
                key = {"train": "n", "val": "n_val", "test": "n_test"}[split]
                raise ConfigError(f"split_weights.{split}",
                                  f"must be > 0 when {key} > 0 (it is the {split} split's share of puzzle space)")
        check_fits_in_memory(sizes, cfg["shard_size"])
        check_fits_on_disk(sizes, Path(out), layout)
    return Settings(
        task=name, task_config=task_config, style=cfg["style"], paraphraser=para,
        seed=cfg["seed"], sizes=sizes, out=Path(out), problems=files.get("problems"),
        traces=files.get("traces"), traces_layout=traces_layout, on_bad_trace=on_bad_trace,
        layout=layout, decontaminate=files.get("decontaminate"), decontaminate_ngram=ngram, llm=llm_cfg,
        proposer=proposer_cfg,
        human=human, human_ratio=ratio, human_repeat=cfg.get("human_repeat", 1),
        problems_split=cfg.get("problems_split", "train"), max_chars=cfg["max_chars"],
        split_weights=weights, workers=workers, shard=cfg["shard"],
        num_shards=cfg["num_shards"], shard_size=cfg["shard_size"],
        progress=bool(cfg.get("progress", True)), **variants,
    )


SIZE_KEYS = {"train": "n", "val": "n_val", "test": "n_test", HELDOUT_SPLIT: "n_test_unseen"}
# What finalising keeps in memory per record of the split it writes: the puzzle's 8-byte hash
# as a Python int in a set (the int, and up to three 16-byte slots: a set grows when 60% full)
# and the record's length in a list (the int and its 8-byte slot). Per planned chunk: its
# (split, start, stop) tuple in the plan and again in the finaliser's index.
RECORD_BYTES = sys.getsizeof(1 << 63) + 3 * 16 + sys.getsizeof(1 << 20) + 8
CHUNK_BYTES = 2 * (sys.getsizeof((0, 0, 0)) + 2 * sys.getsizeof(1 << 40) + 8)


def memory_bytes() -> Optional[int]:
    """This machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(sizes: dict, shard_size: int) -> None:
    """Refuse, naming the key, a size whose bookkeeping would not fit in half of this machine's
    memory, before any work (without this check a huge n ran into a MemoryError and left .work
    behind; README.md)."""
    memory = memory_bytes()
    if not memory:
        return
    budget = memory // 2
    for split, k in sizes.items():
        if k * RECORD_BYTES > budget:
            raise ConfigError(SIZE_KEYS[split], f"{k} records of the {split} split do not fit: finalising keeps "
                              f"about {RECORD_BYTES} bytes per record (puzzle hashes to drop repeats, lengths "
                              f"for percentiles), {k * RECORD_BYTES / 2**30:.1f} GiB, more than half of this "
                              f"machine's {memory / 2**30:.1f} GiB; ask for at most {budget // RECORD_BYTES}")
    chunks = sum(-(-k // shard_size) for k in sizes.values())
    need = max(sizes.values(), default=0) * RECORD_BYTES + chunks * CHUNK_BYTES
    if need > budget:
        raise ConfigError("shard_size", f"shard_size={shard_size} cuts the {sum(sizes.values())} records asked "
                          f"for into {chunks} chunks; their plan and the records' bookkeeping need about "
                          f"{need / 2**30:.1f} GiB, more than half of this machine's {memory / 2**30:.1f} GiB; "
                          f"raise shard_size")


# The shortest line a record can be written as: its fields with the shortest values (a
# 3-number Countdown record is 480 to 1,321 bytes, median 570). A run writes each kept record
# twice (its chunk line in OUT/.work, with bookkeeping, then its shard line) and each rejected
# or repeated item once at most, so at least this per item asked for while at least half the
# items give a kept record: a floor, so that a run that fits is not refused.
MIN_RECORD_BYTES = len(json.dumps({
    "Question": "", "Answer": 0, "Reasoning": "Answer: 0", "id": "t/val/0/0", "task": "t", "split": "val",
    "style": "direct", "source": "synthetic", "puzzle": {},
    "stats": {"steps": 0, "abandoned_steps": 0, "backspaces": 0, "characters": 0, "slips": 0}})) + 1


def free_bytes(path: Path) -> Optional[int]:
    """Free bytes on the file system ``path`` will be on (its nearest existing folder), or
    None where the system does not say."""
    where = path.resolve()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def check_fits_on_disk(sizes: dict, out: Path, layout: str = "seed") -> None:
    """Refuse, naming ``out``, a run whose records cannot fit in the free space of ``out``'s
    file system, before any work (without it a full disk stops a run partway, in an OSError
    from whichever write finds it full). The need is ``MIN_RECORD_BYTES`` an item, less what
    a resumed run's chunks already hold. Not checked: a finished dataset (its run writes
    nothing), the other layouts (rows of their own shape), and problems= or traces= runs
    (their size is not known yet)."""
    free = free_bytes(out)
    if free is None or layout != "seed" or dataset_state(out) == "finished":
        return
    records = sum(sizes.values())
    written = sum(p.stat().st_size for p in (out / ".work").rglob("chunk-*.jsonl") if p.is_file())
    need = MIN_RECORD_BYTES * records - written
    if need > free:
        raise ConfigError("out", f"{out} is on a file system with {free / 2**20:,.0f} MiB free; the {records:,} "
                          f"records asked for need at least {need / 2**20:,.0f} MiB more ({MIN_RECORD_BYTES} bytes "
                          f"each at the least; a run writes each record twice, in a chunk in {out / '.work'} and in "
                          f"a shard); free some space or give out= a folder on another file system")


def hydra_output() -> Optional[Path]:
    """The output folder Hydra made for this run (``python -m generate``), or None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
    except (ImportError, ValueError, AttributeError):
        return None


def same_config_or_error(old: dict, new: dict, out: Path) -> None:
    """Resume only into an OUT made with the same fingerprint; else name the keys that differ."""
    if old != new:
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError("out", f"{out} holds a dataset made with a different config "
                          f"(differs in: {', '.join(differ)}); choose another out or delete it")

