"""make bench runs four benchmarks; nothing else in the suite runs them, so a change elsewhere
broke it once unseen (generate_bench composed the generate config without the task group that
conf/__init__.py registers). These run each one's parts on tiny sizes."""

import json
import subprocess
import sys

import pytest

from benchmarks import generate_bench
from tests.conftest import ROOT


def test_the_generate_benchmark_composes_the_generate_config(tmp_path):
    """In a process of its own, as make bench runs it (here conftest has imported conf, which
    registers the task group, so an in-process test would pass either way)."""
    code = ("import json, sys; from benchmarks import generate_bench; "
            "print(json.dumps(generate_bench.cfg(sys.argv[1], n=10)))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    c = json.loads(done.stdout)
    assert c["task"]["name"] == "countdown" and c["n"] == 10 and c["out"] == str(tmp_path / "d")


@pytest.mark.slow
def test_every_task_is_measured_or_says_why_not(capsys, monkeypatch):
    """equation24 holds a few hundred distinct puzzles and llm_search needs an LLM: each says
    why in its line and the benchmark goes on to the next task instead of stopping make bench."""
    from solvers import TASKS

    monkeypatch.setattr(generate_bench, "FEWER", {"program": 20})   # sandboxed programs: slow
    generate_bench.per_task(n=300)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert len(lines) == 2 * len(TASKS)
    for line in lines:
        name = line.split()[0]
        assert name in TASKS
        assert ("records/s" in line) != ("not measured" in line), line
    assert any(line.split()[0] == "equation24" and "ran out of distinct puzzles" in line for line in lines)
    assert any(line.split()[0] == "llm_search" and "proposer" in line for line in lines)
    assert sum("records/s" in line for line in lines) == 2 * (len(TASKS) - 2)


@pytest.mark.slow
@pytest.mark.parametrize("module, args, expect", [
    ("benchmarks.decode_bench", ["--prompts", "4", "--batch-size", "4", "--max-new-tokens", "8",
                                 "--modes", "generate,visible,erase"], ["model.generate", "visible", "erase"]),
    ("benchmarks.grpo_bench", ["--prompts", "1", "--num-generations", "2", "--max-completion-length", "8",
                               "--steps", "2", "--generators", "trl,project"], ["| trl |", "| project |"]),
    ("benchmarks.sft_metrics_bench", ["--steps", "2", "--blocks", "1"], ["TRL's compute_loss", "train/sft.py"]),
])
def test_the_decode_grpo_and_sft_benchmarks_print_their_rows(module, args, expect):
    done = subprocess.run([sys.executable, "-W", "ignore", "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(e in done.stdout for e in expect), done.stdout
