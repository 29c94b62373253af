"""Generated datasets stay byte-identical across refactors: small datasets of every task that
samples its own puzzles, in every style and with each trace variant, hashed and compared with
the digests in tests/fixtures/dataset_hashes.json.

A change that is meant to change records (new wording, a new stats key) regenerates the
file on purpose: ``python -m tests.test_dataset_hashes`` rewrites it; the diff then shows
which datasets moved.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from conf import task_node
from generate import pipeline
from solvers import TASKS
from solvers.trace import STYLES
from tests.conftest import generate_cfg

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "dataset_hashes.json"
VARIANTS = {"plain": {}, "notes": {"notes": True}, "slips": {"slips": 0.5}, "think": {"think": 0.5}, "mix": {"mix": True}}


def cases() -> list[tuple[str, str, str]]:
    """(task, style, variant): every style plainly, every variant in the backspace style."""
    tasks = [name for name, task in TASKS.items() if not task.PROPOSES]
    return ([(t, s, "plain") for t in tasks for s in STYLES]
            + [(t, "backspace", v) for t in tasks for v in VARIANTS if v != "plain"])


def digest(out: Path) -> str:
    """sha256 over every shard's path and bytes (the manifest holds paths and timings)."""
    h = hashlib.sha256()
    for shard in sorted(out.glob("*/shard-*.jsonl")):
        h.update(str(shard.relative_to(out)).encode() + b"\0" + shard.read_bytes())
    return h.hexdigest()


def make(tmp: Path, task: str, style: str, variant: str) -> str:
    cfg = generate_cfg(tmp / f"{task}-{style}-{variant}", style=style, n=3, n_val=1, n_test=1, n_test_unseen=0,
                       seed=7, **VARIANTS[variant])
    cfg["task"] = task_node(task)  # the task's defaults, as task=<name> gives them
    out, _ = pipeline.run(cfg)
    return digest(out)


@pytest.mark.parametrize("task, style, variant", cases())
def test_dataset_is_byte_identical_to_the_committed_digest(tmp_path, task, style, variant):
    want = json.loads(FIXTURE.read_text())
    key = f"{task}/{style}/{variant}"
    assert key in want, f"no committed digest for {key}: run python -m tests.test_dataset_hashes"
    assert make(tmp_path, task, style, variant) == want[key], key


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        table = {f"{t}/{s}/{v}": make(Path(tmp), t, s, v) for t, s, v in cases()}
    FIXTURE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(table)} digests to {FIXTURE}", file=sys.stderr)
