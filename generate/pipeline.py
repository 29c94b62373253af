"""The data pipeline: solve -> render -> paraphrase -> validate -> write.

Work is cut into chunks of ``shard_size`` item indices per split. Item ``idx`` of a split
is a pure function of the config and ``idx`` (its randomness is seeded from
``"{task}/{split}/{seed}/{idx}"``), so a chunk can be made by any process on any machine,
in any order, with any number of workers, and come out byte-identical.

1. **Chunks** go to ``OUT/.work/<split>/chunk-NNNNN.jsonl``, each written to a temporary
   file and renamed when complete: an interrupted run resumes from the chunks it has.
   ``shard=i num_shards=k`` makes every k-th chunk, for runs on several processes or
   machines sharing OUT.
2. **Finalise**, once every planned chunk exists: read the chunks in index order, drop the
   rejected items and the repeats of an earlier puzzle, and write the first ``n`` records
   of each split to ``OUT/<split>/shard-NNNNN.jsonl``; make more chunks if repeats left a
   split short. Then ``manifest.json`` (written last: its presence means the dataset is
   complete) and the ``README.md`` dataset card.

Memory stays flat in ``n`` except for the set of 8-byte puzzle hashes used to find repeats
and the per-record lengths kept for percentiles (``RECORD_BYTES`` per record of a split): a
size whose bookkeeping would not fit in half the machine's memory is refused up front.

OUT is written only when it is missing, empty, or a dataset of this project (its
manifest.json, or the .work/ of an unfinished run); ``/``, the home folder and the repository
never (``generate.write.check_out``). A run holds ``OUT/.work/run.lock`` (one per shard of a
sharded run) from start to end, so a second run of it fails at once naming the first; the
lock of a killed run is taken over. Finalising records in ``.work/made.json`` what it is about
to write, and removes, on a resumed finalise, only that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from tqdm import tqdm

from generate import interop, paraphrase, validate
from generate.splits import HELDOUT_SPLIT, item_rng, split_of
from generate.write import Mutex, RunLock, check_out, is_our_manifest, remove_work
from solvers import TASKS
from solvers.config import ConfigError, build, check_choice, check_int_range
from solvers import variants
from solvers.trace import BACKSPACE, STYLES, MalformedTrace, Step, collapse, render, stats

SPLITS = ("train", "val", "test")
MAX_DRAWS = 10_000  # puzzles drawn for one item before it is given up as "no_puzzle"
DIVERSITY_SAMPLE = 2000  # records per split whose wording diversity is measured


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("backspace")
    except PackageNotFoundError:
        return "0+unknown"


# ----------------------------------------------------------------------------- settings

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
        human = Path(human)
        if not human.is_dir():
            raise ConfigError("human", f"no such folder: {human}")
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
    memory, before any work: n=10**12 once ran 14 s into a MemoryError and left .work behind."""
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


def hydra_output() -> Optional[Path]:
    """The output folder Hydra made for this run (``python -m generate``), or None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
    except (ImportError, ValueError, AttributeError):
        return None


def read_problems(path: Path, task, lines: Optional[list[int]] = None) -> list[dict]:
    """Every puzzle of a problems file (one JSON object per line in UTF-8; blank lines
    skipped), checked before anything is written. A bad line is an error naming its number.
    ``lines``, when given, gets each puzzle's line number."""
    puzzles = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError("problems", f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} "
                                  f"at column {e.start + 1}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                puzzles.append(task.parse_puzzle(json.loads(line)))
                if lines is not None:
                    lines.append(lineno)
            except json.JSONDecodeError as e:
                raise ConfigError("problems", f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            except ValueError as e:
                raise ConfigError("problems", f"{path}:{lineno}: {e}") from None
    if not puzzles:
        raise ConfigError("problems", f"{path}: holds no puzzles")
    return puzzles


# ----------------------------------------------------------------------------- items

class Items:
    """Makes item ``idx`` of a split: everything a worker process needs."""

    def __init__(self, s: Settings, problems: Optional[list[dict]] = None,
                 traces: Optional[list[tuple]] = None, contamination=None) -> None:
        self.s = s
        self.task = s.module
        self.problems = problems
        self.traces = traces  # (puzzle, events or None) per imported line
        self.contamination = contamination

    def content_split(self, puzzle: dict) -> str:
        if self.task.is_heldout(puzzle, self.s.task_config):
            return HELDOUT_SPLIT
        return split_of(self.task.puzzle_key(puzzle), self.s.split_weights)

    def config_for(self, split: str, idx: int):
        """The task config item ``idx`` is solved with: with ``mix``, a heuristic drawn for it
        from its own stream (so that mix=false items are what they always were)."""
        s = self.s
        if not s.mix:
            return s.task_config
        heuristic = item_rng(s.task, split, s.seed, idx, "/mix").choice(self.task.HEURISTICS)
        return dataclasses.replace(s.task_config, heuristic=heuristic)

    def draw(self, split: str, idx: int) -> tuple[Optional[dict], Optional[list], str]:
        """(puzzle, events, reason): a puzzle of this split the solver solved."""
        s, task = self.s, self.task
        rng = item_rng(s.task, split, s.seed, idx)
        config = self.config_for(split, idx)
        if self.traces is not None:  # imported: the search is given, not made
            puzzle, events, *why = self.traces[idx]  # why: the reader's reason when it has no events
            return puzzle, events, why[0] if why else "unconvertible"
        if self.problems is not None:
            puzzle = self.problems[idx]
            if task.PROPOSES:
                return self.proposed(puzzle, config, rng)
            if task.solve_given is not None:  # countdown: (events, reason), e.g. no_solution
                return (puzzle, *task.solve_given(puzzle, config, rng))
            return puzzle, task.solve(puzzle, config, rng), "unsolved"
        for _ in range(MAX_DRAWS):
            puzzle = task.sample(s.task_config, rng)
            if self.content_split(puzzle) != split:
                continue
            events = task.solve(puzzle, config, rng)
            if events is not None:
                return puzzle, events, ""
        return None, None, "no_puzzle"

    def proposed(self, puzzle: dict, config, rng) -> tuple[dict, Optional[list], str]:
        """Solve with an LLM proposing the steps (llm_search). The Proposer is built lazily,
        once per process: a forked worker opens its own cache connection and HTTP client, and
        saves its usage to its own file under OUT/.work/proposer for the manifest."""
        from generate.llm import ProposeFailed, Proposer
        if getattr(self, "_proposer_pid", None) != os.getpid():
            usage = self.s.out / ".work" / "proposer" / f"usage-{os.getpid()}-{os.urandom(4).hex()}.json"
            self._proposer, self._proposer_pid = Proposer(self.s.proposer, usage), os.getpid()
        try:
            return puzzle, self.task.solve(puzzle, config, rng, propose=self._proposer), "unsolved"
        except ProposeFailed as e:
            print(e)
            return puzzle, None, "propose_failed"

    def prepare(self, split: str, idx: int) -> tuple[Optional[dict], Optional[list], str]:
        """(puzzle, events as they will be written, reason when there are none)."""
        s = self.s
        puzzle, events, reason = self.draw(split, idx)
        if events is None:
            return puzzle, None, reason
        if s.think:
            events = variants.think(events, s.think, item_rng(s.task, split, s.seed, idx, "/think"))
        return puzzle, events, ""

    def plain_steps(self, events: list) -> list[str]:
        """The steps' plain wording: what an LLM paraphraser is asked to rewrite."""
        w = paraphrase.words(self.task, events, "none", None, style=self.s.style, notes=self.s.notes)
        return [t for t, e in zip(w, events) if isinstance(e, Step)]

    def __call__(self, split: str, idx: int) -> str:
        return self.finish(split, idx, *self.prepare(split, idx))

    def finish(self, split: str, idx: int, puzzle: Optional[dict], events: Optional[list], reason: str,
               steps: Optional[list[str]] = None) -> str:
        """One chunk line: ``meta<TAB>record``, both JSON (a rejection has no record).
        ``steps``: the steps' words from an LLM paraphraser, when there is one."""
        s, task = self.s, self.task
        if events is None or reason:
            return json.dumps({"reject": reason}) + "\t"
        words = paraphrase.words(task, events, s.paraphraser, item_rng(s.task, split, s.seed, idx, "/words"),
                                 style=s.style, notes=s.notes, slips=s.slips, steps=steps)
        text = render(events, words, s.style, notes=s.notes)
        record = {
            "Question": task.question(puzzle),
            "Answer": events[-1].value,
            "Reasoning": text,
            "id": f"{s.task}/{split}/{s.seed}/{idx}",
            "task": s.task,
            "split": split,
            "style": s.style,
            "source": "synthetic" if self.traces is None else "imported",
            "puzzle": puzzle,
            # slips are written in the backspace style only; the others write the corrected step
            "stats": {**stats(events, text),
                      "slips": sum(BACKSPACE in w for w in words) if s.style == "backspace" else 0,
                      **(task.record_stats(events) if task.record_stats is not None else {})},
        }
        heuristic = self.config_for(split, idx).heuristic
        if s.mix:
            record["heuristic"] = heuristic
        leak_check = None if self.problems is not None or self.traces is not None else self.content_split
        reason = validate.check(record, task, s.max_chars, leak_check)
        if reason is None and self.contamination is not None and self.contamination.hit(puzzle, record["Question"]):
            reason = "contaminated"
        meta = {"reject": reason, "key": task.puzzle_key(puzzle), "stats": record["stats"]}
        if s.layout != "seed":
            record = interop.export(s.layout, record, events, self.config_for(split, idx))
        return json.dumps(meta) + "\t" + json.dumps(record, ensure_ascii=False)


_ITEMS: Optional[Items] = None


def _init_worker(items: Items) -> None:
    global _ITEMS
    _ITEMS = items


def _work(split: str, idx: int) -> str:
    return _ITEMS(split, idx)


def _prepare(split: str, idx: int) -> tuple:
    return _ITEMS.prepare(split, idx)


# ----------------------------------------------------------------------------- files

def atomic_write_lines(path: Path, lines: Iterator[str]) -> int:
    """Write lines to ``path`` through a temporary file renamed into place: the file
    exists only once it is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            count += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return count


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_lines(path, iter([text.rstrip("\n")]))


def chunk_path(out: Path, split: str, start: int, stop: int) -> Path:
    return out / ".work" / split / f"chunk-{start:09d}-{stop:09d}.jsonl"


def shard_path(out: Path, split: str, shard: int) -> Path:
    return out / split / f"shard-{shard:05d}.jsonl"


# ----------------------------------------------------------------------------- running

class Generator:
    def __init__(self, s: Settings, on_chunk: Optional[Callable[[str, int], None]] = None) -> None:
        self.s = s
        self.on_chunk = on_chunk  # called after each chunk is written (tests interrupt here)
        self.problem_lines: list[int] = []  # each given puzzle's line in the problems file
        self.problems = read_problems(s.problems, s.module, self.problem_lines) if s.problems else None
        self.traces = None
        if s.traces:
            self.traces = interop.read_traces(s.traces, s.traces_layout, skip_bad=s.on_bad_trace == "skip")
        given = self.problems if self.problems is not None else self.traces
        if given is not None:
            self.sizes = {s.problems_split: len(given)}
        else:
            self.sizes = dict(s.sizes)
        contamination = None
        if s.decontaminate:
            from generate.decontaminate import Contamination
            contamination = Contamination.from_file(s.decontaminate, s.module, s.decontaminate_ngram)
        self.contamination = contamination
        self.items = Items(s, self.problems, self.traces, contamination)
        self.human, self.human_bad = [], []
        if s.human is not None:
            from generate.human import read_folder
            self.human, self.human_bad = read_folder(s.human, s.max_chars)
            for name, reason in self.human_bad:
                print(f"human trace skipped: {s.human / name}: {reason}")
            if not self.human:
                raise ConfigError("human", f"{s.human} holds no good human traces ({len(self.human_bad)} bad)")
        self.llm = None
        if s.llm is not None:
            from generate import fidelity, llm
            self.llm = llm.Paraphraser(s.llm, fidelity.check)
        self.timing = {"generate_s": 0.0, "finalize_s": 0.0, "items": 0}

    # Planned chunks: enough item indices for every split's size if nothing were
    # rejected. A chunk is a range of indices [start, stop), at most shard_size long.
    def plan(self) -> list[tuple[str, int, int]]:
        return [(split, start, min(start + self.s.shard_size, size))
                for split, size in self.sizes.items()
                for start in range(0, size, self.s.shard_size)]

    def make_chunks(self, chunks: list[tuple[str, int]]) -> None:
        todo = [ch for ch in chunks if not chunk_path(self.s.out, *ch).exists()]
        if not todo:
            return
        t0 = time.perf_counter()
        total = sum(stop - start for _, start, stop in todo)
        bar = tqdm(total=total, unit="item", desc="generate", disable=not self.s.progress,
                   mininterval=1.0, smoothing=0.1)
        pool = None
        if self.s.workers > 1:
            pool = multiprocessing.get_context("fork").Pool(
                self.s.workers, initializer=_init_worker, initargs=(self.items,))
        try:
            for split, start, stop in todo:
                indices = range(start, stop)
                path = chunk_path(self.s.out, split, start, stop)
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

    def human_rows(self, size: int) -> int:
        """How many human rows the train split gets: enough to make up ``human_ratio`` of it,
        or each human trace ``human_repeat`` times."""
        s = self.s
        if s.human_ratio is not None:
            return round(s.human_ratio * size / (1 - s.human_ratio))
        return len(self.human) * s.human_repeat

    def proposer_usage(self) -> dict:
        """Requests, tokens and estimated cost of the llm_search proposer, summed over every
        process that asked (this run's workers and those of an earlier, interrupted run)."""
        from generate.llm import PROPOSE_VERSION, usage_report
        return usage_report(self.s.proposer, (self.s.out / ".work" / "proposer").glob("usage-*.json"),
                            PROPOSE_VERSION)

    def llm_usage(self) -> Optional[dict]:
        """Requests, tokens and estimated cost of the LLM paraphraser, summed over every
        chunk of the dataset (made by this process or an earlier, interrupted one)."""
        if self.llm is None:
            return None
        from generate.llm import PROMPT_VERSION, usage_report
        return usage_report(self.llm.c, (self.s.out / ".work").glob("*/*.llm.json"), PROMPT_VERSION)

    def finished(self, work_removed: bool = False) -> bool:
        """Whether OUT holds the finished dataset (of this config: another is an error).
        ``work_removed``: .work vanished under this run, which only finishing it explains."""
        manifest = self.s.out / "manifest.json"
        if not manifest.exists():
            if work_removed:
                raise ConfigError("out", f"{self.s.out / '.work'} was removed while this run was using it; "
                                  f"run again")
            return False
        if not is_our_manifest(manifest):
            raise ConfigError("out", f"{manifest} was not written by backspace; move it away and run again")
        _same_config_or_error(json.loads(manifest.read_text())["fingerprint"], self.s.fingerprint(), self.s.out)
        return True

    def run(self) -> Path:
        """Make the dataset in OUT, or the part of it that this shard makes. OUT was checked
        by ``settings`` (``check_out``); a ``RunLock`` keeps a second run of the same shard
        out, and the ``Mutex`` orders the processes of a sharded run."""
        s = self.s
        check_out(s.out, hydra_output())  # again: the folder may have changed since the config was checked
        if self.finished():
            return s.out
        work = s.out / ".work"
        work.mkdir(parents=True, exist_ok=True)
        lock = RunLock(work, s.shard, s.num_shards)
        if not lock.acquire(s.out) and self.finished(work_removed=True):  # finished meanwhile
            return s.out
        try:
            with Mutex(work) as held:
                if self.finished(work_removed=not held):  # finished by another run meanwhile
                    return s.out
                fp_file = work / "fingerprint.json"
                if fp_file.exists():
                    _same_config_or_error(json.loads(fp_file.read_text()), s.fingerprint(), s.out)
                else:
                    atomic_write_text(fp_file, json.dumps(s.fingerprint(), indent=1))
                self.check_final_names()
            plan = self.plan()
            mine = [ch for k, ch in enumerate(plan) if k % s.num_shards == s.shard]
            self.make_chunks(mine)
            with Mutex(work) as held:
                if self.finished(work_removed=not held):  # another shard's process finished it meanwhile
                    return s.out
                missing = [ch for ch in plan if not chunk_path(s.out, *ch).exists()]
                if missing:
                    print(f"shard {s.shard}/{s.num_shards}: my chunks are done; {len(missing)} chunk(s) "
                          f"of other shards are missing, so {s.out} is not finalised yet. The run "
                          f"that makes the last chunk finalises it.")
                    return s.out
                self.finalize()
            return s.out
        finally:
            if is_our_manifest(s.out / "manifest.json"):  # finished, by this run or another
                remove_work(work, lock)
            lock.release()

    # The names finalising writes in OUT. Before it writes one it records it in
    # .work/made.json, so that a resumed finalise removes what an interrupted one left, and
    # nothing else: a train/ or README.md found there that this run did not make is an error.
    def final_names(self) -> list[str]:
        return [*self.sizes, "README.md", "manifest.json"]

    def made(self) -> list[str]:
        path = self.s.out / ".work" / "made.json"
        return json.loads(path.read_text()) if path.exists() else []

    def check_final_names(self) -> None:
        made = self.made()
        foreign = [name for name in self.final_names()
                   if name not in made and os.path.lexists(self.s.out / name)]
        if foreign:
            raise ConfigError("out", f"{', '.join(str(self.s.out / n) for n in foreign)} "
                              f"{'is' if len(foreign) == 1 else 'are'} in the way and not written by this run; "
                              f"move {'it' if len(foreign) == 1 else 'them'} away and run again")

    def finalize(self) -> None:
        s = self.s
        t0 = time.perf_counter()
        self.check_final_names()
        atomic_write_text(s.out / ".work" / "made.json", json.dumps(self.final_names()))
        report = {}
        for split, size in self.sizes.items():
            path = s.out / split
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # left by an interrupted finalise of this run
            elif os.path.lexists(path):
                path.unlink()
            report[split] = self.finalize_split(split, size)
            if s.layout != "seed":  # their loaders read a split as one JSON list (train.json)
                report[split].update(interop.write_list_file(s.out, split, report[split]["shards"]))
        self.timing["finalize_s"] += time.perf_counter() - t0
        from generate.write import dataset_card, manifest_dict
        man = manifest_dict(s, report, self.sizes)
        if self.contamination is not None:
            man["config"]["decontaminate"].update(self.contamination.summary())
        if self.llm is not None:
            man["llm"] = self.llm_usage()
        if s.proposer is not None:
            man["proposer"] = self.proposer_usage()
        if self.human:
            rows = report["train"].get("human_rows", 0)
            man["human"] = {"dir": str(s.human), "good_files": len(self.human), "rows": rows,
                            "share_of_train": round(rows / max(1, report["train"]["records"]), 4),
                            "mean_repeats": round(rows / len(self.human), 2), "ratio": s.human_ratio,
                            "repeat": s.human_repeat,
                            "bad_files": [{"file": n, "reason": r} for n, r in self.human_bad]}
        atomic_write_text(s.out / "README.md", dataset_card(man, s.out))
        atomic_write_text(s.out / "manifest.json", json.dumps(man, indent=2, ensure_ascii=False))

    def finalize_split(self, split: str, size: int) -> dict:
        s = self.s
        seen: set[int] = set()
        rejections: dict[str, int] = {}
        acc = _StatsAccumulator()
        diversity = _Diversity()
        shards: list[str] = []
        buffer: list[str] = []
        items_used = 0

        def flush() -> None:
            path = shard_path(s.out, split, len(shards))
            atomic_write_lines(path, iter(buffer))
            shards.append(str(path.relative_to(s.out)))
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
                if len(buffer) == s.shard_size:
                    flush()

        first_line: dict[int, int] = {}  # given problems: a puzzle's hash -> its first line

        start = 0
        while acc.count < size:
            if start in planned:
                stop, topup = planned[start], False
            elif self.problems is not None or self.traces is not None:
                break  # every given puzzle or trace is used
            else:  # top-up for rejected and repeated items: the shortfall and a quarter more
                stop, topup = start + min(s.shard_size, max(64, (size - acc.count) * 5 // 4)), True
            path = chunk_path(s.out, split, start, stop)
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
                            print(f"problems: {s.problems}:{self.problem_lines[idx]}: dropped, the same "
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
                        if len(buffer) == s.shard_size:
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


def _counting(lines, bar):
    for line in lines:
        bar.update(1)
        yield line


def _same_config_or_error(old: dict, new: dict, out: Path) -> None:
    if old != new:
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError("out", f"{out} holds a dataset made with a different config "
                          f"(differs in: {', '.join(differ)}); choose another out or delete it")


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


def run(cfg: dict, on_chunk: Optional[Callable[[str, int], None]] = None) -> tuple[Path, Generator]:
    """Generate the dataset a resolved config describes; return its directory."""
    gen = Generator(settings(cfg), on_chunk)
    return gen.run(), gen
