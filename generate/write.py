"""What a finished dataset says about itself (manifest.json and the README.md card), the
folder it is written into (whose it is, and which run holds it), and how a file in it is
written: whole or not at all. One file, not three, because they answer one question, whether
a folder is a dataset of this project that a run may write (and finish) without losing a
file: the manifest is what marks a finished folder as ours, the run locks mark an unfinished
one, and the atomic writes keep every file whole."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from solvers.config import ConfigError
from solvers.trace import BACKSPACE


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("backspace")
    except PackageNotFoundError:
        return "0+unknown"


def manifest_dict(settings, report: dict, sizes: dict) -> dict:
    totals: dict[str, int] = {}
    for split in report.values():
        for reason, k in split["rejections"].items():
            totals[reason] = totals.get(reason, 0) + k
    config = {
        "task": {"name": settings.task, **dataclasses.asdict(settings.task_config)},
        "style": settings.style, "paraphraser": settings.paraphraser, "seed": settings.seed,
        "sizes": sizes, "problems": str(settings.problems) if settings.problems else None,
        "max_chars": settings.max_chars, "split_weights": settings.split_weights,
        "shard_size": settings.shard_size, "workers": settings.workers, "num_shards": settings.num_shards,
        "variants": settings.variants(), "layout": settings.layout,
        "traces": {"file": str(settings.traces), "layout": settings.traces_layout,
                   "on_bad_trace": settings.on_bad_trace}
        if settings.traces else None,
        "decontaminate": {"file": str(settings.decontaminate), "ngram": settings.decontaminate_ngram}
        if settings.decontaminate else None,
    }
    return {
        "dataset": settings.out.name,
        "package": "backspace",
        "version": package_version(),
        "config": config,
        "counts": {split: r["records"] for split, r in report.items()},
        "rejections": dict(sorted(totals.items())),
        "splits": report,
        "fingerprint": settings.fingerprint(),
    }


def _visible(text: str) -> str:
    return text.replace(BACKSPACE, "⌫")


def dataset_card(man: dict, out: Path) -> str:
    cfg = man["config"]
    first = None
    for split, r in man["splits"].items():
        if r["shards"]:
            with open(out / r["shards"][0], encoding="utf-8") as f:
                line = f.readline()
            if line:
                first = json.loads(line)
                break
    rows = "\n".join(
        f"| {split} | {r['records']} | {r['items_used']} | "
        f"{', '.join(f'{k}: {v}' for k, v in r['rejections'].items()) or '-'} | "
        f"{r['stats'].get('characters_mean', '-')} | {r['stats'].get('with_abandoned_steps', '-')} |"
        for split, r in man["splits"].items())
    example = ""
    if first is not None and cfg.get("layout", "seed") != "seed":
        example = (f"\n## An example ({cfg['layout']} layout)\n\n```json\n"
                   f"{json.dumps(first, indent=1, ensure_ascii=False)[:3000]}\n```\n")
    elif first is not None:
        example = (
            "\n## An example (U+0008 shown as ⌫)\n\n"
            f"Question: {first['Question']}\n\n```\n{_visible(first['Reasoning'])}\n```\n")
    files = ", ".join(f'"{split}": "{split}/*.jsonl"' for split in man["splits"])
    if man.get("human"):
        h = man["human"]
        rows += (f"\n\nThe train split mixes in {h['rows']} rows of {h['good_files']} human traces from "
                 f"`{h['dir']}` ({100 * h['share_of_train']:.1f}% of train, each trace {h['mean_repeats']}x on "
                 f"average; `source: human`; {len(h['bad_files'])} bad files skipped).")
    return f"""# {man['dataset']}

Reasoning traces for the task `{cfg['task']['name']}`, style `{cfg['style']}`, paraphraser
`{cfg['paraphraser']}`, seed {cfg['seed']}, made by backspace {man['version']}.
Variants: {', '.join(f'{k} {v}' for k, v in cfg.get('variants', {}).items())}; layout `{cfg.get('layout', 'seed')}`.
Every record passed the validator (collapsed Reasoning ends with `Answer: <Answer>`, the
answer verifies, every kept equation is true, at most {cfg['max_chars']} characters).

| split | records | items drawn | rejected (reason: count) | mean characters | with abandoned steps |
|---|---|---|---|---|---|
{rows}

Fields: `Question`, `Answer`, `Reasoning` (the seed format, verbatim), plus `id`, `task`,
`split`, `style`, `source`, `puzzle`, `stats`. The full config is in `manifest.json`.

```python
from datasets import load_dataset
ds = load_dataset("json", data_files={{{files}}})
```
{example}"""


def summary(out: Path) -> str:
    """The lines `make demo` prints: per split, records and what the traces look like."""
    man = json.loads((out / "manifest.json").read_text())
    lines = [f"dataset {out}  (task {man['config']['task']['name']}, style {man['config']['style']}, "
             f"paraphraser {man['config']['paraphraser']}, seed {man['config']['seed']})"]
    for split, r in man["splits"].items():
        st = r["stats"]
        rej = ", ".join(f"{k} {v}" for k, v in r["rejections"].items()) or "none"
        lines.append(
            f"  {split:<12} {r['records']:>7} records  chars mean {st.get('characters_mean', 0):>6} "
            f"p95 {st.get('characters_p95', 0):>5}  abandoned steps in {100 * st.get('with_abandoned_steps', 0):.1f}% "
            f"(mean {st.get('abandoned_steps_mean', 0)})  rejected: {rej}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files

@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w"):
    """An open temporary file beside ``path`` (``mode`` "w" for UTF-8 text, "wb" for bytes),
    renamed into place once the block ends: ``path`` is complete or untouched, and a block
    that raises leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_lines(path: Path, lines: Iterator[str]) -> int:
    """Write lines to ``path`` through a temporary file renamed into place: the file
    exists only once it is complete."""
    count = 0
    with atomic_file(path) as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            count += 1
    return count


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_lines(path, iter([text.rstrip("\n")]))


def chunk_path(out: Path, split: str, start: int, stop: int) -> Path:
    return out / ".work" / split / f"chunk-{start:09d}-{stop:09d}.jsonl"


def shard_path(out: Path, split: str, shard: int) -> Path:
    return out / split / f"shard-{shard:05d}.jsonl"


# ----------------------------------------------------------------------------- the output folder
# generate writes only into a folder it owns: a missing or empty one, or one that holds a
# dataset of this project (a manifest.json it wrote, or the .work/ of an unfinished run).
# Anything else is refused before anything is written: out=. in a clone of the repository
# once deleted its train/ package and replaced its README.

REPOSITORY = Path(__file__).resolve().parents[1]
_PROJECT_NAME = re.compile(r"""(?m)^name\s*=\s*["']backspace["']""")


def _is_repository(folder: Path) -> bool:
    """The root of this project's source: the checkout generate runs from, or any folder whose
    pyproject.toml names the project (another clone)."""
    if folder == REPOSITORY:
        return True
    try:
        return bool(_PROJECT_NAME.search((folder / "pyproject.toml").read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_our_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest.json this project wrote (see ``manifest_dict``)."""
    man = _read_json(path)
    return isinstance(man, dict) and man.get("package") == "backspace" and isinstance(man.get("fingerprint"), dict)


def dataset_state(folder: Path) -> Optional[str]:
    """``"finished"`` (a manifest.json this project wrote), ``"unfinished"`` (the .work/ of a
    run: its fingerprint.json, or only the lock files of a run killed before writing it),
    or None: not a dataset of this project."""
    if is_our_manifest(folder / "manifest.json"):
        return "finished"
    work = folder / ".work"
    fp = _read_json(work / "fingerprint.json")
    if isinstance(fp, dict) and {"version", "task"} <= set(fp):
        return "unfinished"
    try:
        if (os.listdir(folder) == [".work"] and work.is_dir() and not work.is_symlink()
                and all(name.endswith("lock") for name in os.listdir(work))):
            return "unfinished"
    except OSError:
        pass
    return None


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(os.listdir(folder))
    shown = [name + "/" * (folder / name).is_dir() for name in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more


def _only_path_to(folder: Path, inner: Optional[Path]) -> Optional[str]:
    """The entry of ``folder`` that holds nothing but the way down to ``inner`` (Hydra's
    output folder of this very run, made before generate starts: ``cd new && python -m
    generate out=.`` finds outputs/generate/<time>/ there), or None."""
    if inner is None:
        return None
    try:
        parts = inner.resolve().relative_to(folder).parts
    except ValueError:
        return None
    for depth in range(1, len(parts)):
        if os.listdir(folder.joinpath(*parts[:depth])) != [parts[depth]]:
            return None
    return parts[0] if parts else None


def check_out(out: Path, own_output: Optional[Path] = None) -> None:
    """Raise ConfigError("out", ...) unless generate may write into ``out``: a missing or
    empty folder, or a dataset of this project. The file system root, the home folder and
    the repository are refused even when empty. ``own_output``: Hydra's output folder of
    this run, which does not count when it is all there is."""
    where = out.resolve()
    refuse = None
    if where == Path(where.anchor):
        refuse = "is the root of the file system"
    elif where == Path(os.path.expanduser("~")).resolve():
        refuse = "is the home folder"
    elif _is_repository(where):
        refuse = "is the root of the backspace repository (it holds the project's pyproject.toml)"
    if refuse:
        raise ConfigError("out", f"{out} {refuse}; give out= a folder of its own, e.g. data/generated/NAME")
    if not where.exists():
        return
    if not where.is_dir():
        raise ConfigError("out", f"{out} is a file, not a folder")
    names = os.listdir(where)
    if not names or names == [_only_path_to(where, own_output)] or dataset_state(where):
        return
    raise ConfigError("out", f"{out} is not empty and holds no dataset of this project (no manifest.json "
                      f"written by backspace, no .work/ of an unfinished run); it holds {_listing(where)}. "
                      f"Give out= a new or empty folder")


def _lock(path: Path, wait: bool) -> Optional[int]:
    """An fd of ``path`` holding an exclusive POSIX lock, or None when the file was removed
    before the lock was ours (a run finished the dataset and removed .work meanwhile).
    Raises BlockingIOError when ``wait`` is false and another process holds it.

    POSIX (fcntl) locks, not flock: a forked worker does not inherit them, and the kernel
    drops them when the process dies, so a killed run's lock is free again."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EACCES, errno.EAGAIN):
            raise BlockingIOError(str(path)) from None
        raise
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


class Mutex:
    """``with Mutex(OUT/.work) as held:`` the short critical sections that the processes of a
    sharded run take turns in (fingerprint, finalise, removing .work). ``held`` is False
    when .work was removed meanwhile."""

    def __init__(self, work: Path) -> None:
        self.path = work / "lock"
        self.fd: Optional[int] = None

    def __enter__(self) -> bool:
        self.fd = _lock(self.path, wait=True)
        return self.fd is not None

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _command() -> str:
    """This process's command line as typed: ``python -m generate n=5``."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py":
        argv[:1] = ["-m", Path(argv[0]).parent.name]
    return " ".join([Path(sys.executable).name, *argv])


class RunLock:
    """Held by a run (one shard of it) on OUT from start to end, so that a second run of it
    fails at once, naming the first, instead of racing it; the lock file says who holds it.

    ``OUT/.work/run.lock`` (``run-<shard>-of-<num_shards>.lock`` for a sharded run: the
    processes of different shards share OUT by design)."""

    def __init__(self, work: Path, shard: int = 0, num_shards: int = 1) -> None:
        name = "run.lock" if num_shards == 1 else f"run-{shard}-of-{num_shards}.lock"
        self.path = work / name
        self.fd: Optional[int] = None

    @staticmethod
    def holder(path: Path, fd: Optional[int] = None) -> str:
        """Who holds (or held) a run lock. With ``fd`` (the caller holds the lock) the file is
        read through it: closing another fd of the file would release a POSIX lock."""
        if fd is None:
            info = _read_json(path)
        else:
            try:
                info = json.loads(os.pread(fd, 1 << 16, 0))
            except ValueError:
                info = None
        if not isinstance(info, dict):
            return "another run (it has not written its details yet)"
        return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                f"{info.get('command')}")

    def acquire(self, out: Path) -> bool:
        """Take the lock; False when .work vanished first (another run finished the dataset).
        Raises ConfigError("out", ...) naming the run that holds it."""
        try:
            fd = _lock(self.path, wait=False)
        except BlockingIOError:
            raise ConfigError("out", f"{out} is in use by another generate run ({self.holder(self.path)}); "
                              f"wait for it to finish, or stop it and run again") from None
        if fd is None:
            return False
        if os.fstat(fd).st_size:  # left by a run that was killed: the kernel released its lock
            print(f"{out}: taking over the lock of an earlier run that is no longer running "
                  f"({self.holder(self.path, fd)})", file=sys.stderr)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": _command()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        """Release the lock; its file is emptied first, so only a killed run leaves details."""
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            finally:
                os.close(self.fd)
                self.fd = None


def others_running(work: Path, mine: RunLock) -> list[str]:
    """Holders of the other run locks in ``work`` (the other shards' processes still going)."""
    held = []
    for path in sorted(work.glob("run*.lock")):
        if path == mine.path:
            continue
        try:
            fd = _lock(path, wait=False)
        except BlockingIOError:
            held.append(RunLock.holder(path))
            continue
        if fd is not None:
            os.close(fd)
    return held


def remove_work(work: Path, mine: RunLock) -> None:
    """Remove ``OUT/.work`` once the dataset is finished, unless another run (another shard,
    or one that started meanwhile) still holds a lock in it: the last one out removes it."""
    with Mutex(work) as held:
        if held and not others_running(work, mine):
            shutil.rmtree(work, ignore_errors=True)
