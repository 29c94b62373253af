"""benchmarks.gpu_study: the one-job GPU study. Its --smoke path runs here on the CPU (slow);
the fast tests hold its parts: the deadline that stops a process, the table, and every arm's
GPU config composing into TRL configs."""

import json
import subprocess
import sys
import time

import pytest

from benchmarks import gpu_study
from tests.conftest import ROOT
from tests.test_train import compose, pretend_gpu  # noqa: F401  (the fixture)

pytest.importorskip("trl")


# (command, deadline in s, expected status): why
JOBS = [
    ([sys.executable, "-c", "pass"], 30, "ok"),                               # ends by itself
    ([sys.executable, "-c", "raise SystemExit(3)"], 30, "failed (exit 3)"),   # a run that fails says how
    ([sys.executable, "-c", "import time; time.sleep(60)"], 1, "timed out"),  # stopped at its deadline
]


@pytest.mark.parametrize("cmd, seconds, expected", JOBS)
def test_launch_stops_a_process_at_its_deadline(tmp_path, cmd, seconds, expected):
    t0 = time.monotonic()
    status = gpu_study.launch({"job": cmd}, time.monotonic() + seconds, tmp_path / "logs")
    assert status["job"]["status"] == expected
    assert time.monotonic() - t0 < 25                  # a timed-out job does not hold the study up
    assert (tmp_path / "logs" / "job.log").exists()


def test_a_row_reads_metrics_and_a_missing_run_is_an_empty_row(tmp_path):
    m = {"accuracy": 0.5, "pass@1": 0.5, "pass@4": 0.75, "n_problems": 2, "mean_generated_tokens": 10,
         "num_samples": 4, "mean_generated_tokens_sampled": 20, "eval_seconds": 9.0, "mean_completion_tokens": 10,
         "backspace_use": 0.25, "sft_tokens_per_second": 1000.0, "sft_seconds": 60,
         "decodings": {"erase": {"accuracy": 0.6, "n_problems": 2, "mean_generated_tokens": 5, "num_samples": 0,
                                 "eval_seconds": 1.0}}}
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    r = dict(zip(gpu_study.COLUMNS, gpu_study.row("c3_x", "SFT", tmp_path, {"status": "ok", "wall_seconds": 70})))
    # decode tokens/s: 2 problems x (10 greedy + 4 x 20 sampled) tokens in 9 s; erase: 2 x 5 in 1 s
    assert (r["accuracy"], r["pass@k"], r["erase accuracy"], r["decode tokens/s"], r["erase decode tokens/s"],
            r["eval s"]) == ("0.500", "0.750 (k=4)", "0.600", "20", "10", "10")
    empty = dict(zip(gpu_study.COLUMNS, gpu_study.row("c4_y", "SFT", tmp_path / "none", {"status": "timed out"})))
    assert empty["status"] == "timed out" and empty["accuracy"] == ""


@pytest.mark.parametrize("arm", list(gpu_study.ARMS))
def test_every_arm_composes_into_trl_configs_on_the_gpu_preset(tmp_path, pretend_gpu, arm):  # noqa: F811
    """The overrides each stage passes build valid TRL configs (hydra grammar, TRL field names)."""
    from train.checks import check
    from train.trl_configs import grpo_config, sft_config

    common = gpu_study.STUDY + ["hardware=gpu", "sft.max_minutes=3"]
    c = compose("experiment=style_ablation_gpu", *gpu_study.ARMS[arm], *common)
    assert c["hardware"]["bf16"] and not c["hardware"]["use_cpu"]
    sft_config(c, tmp_path / "sft")
    for generator, overrides in gpu_study.GRPO_GENERATORS.items():   # each of stage 2's GRPO runs
        g = compose("experiment=style_ablation_gpu", *gpu_study.ARMS[arm], *common, "sft.enabled=false",
                    "grpo.enabled=true", "grpo.max_minutes=1", *overrides)
        check(g)   # python -m train's checks: grpo.generator=project with TRL's own switches off
        args = grpo_config(g, tmp_path / "grpo")
        assert args.use_transformers_continuous_batching == (generator == "trl_cb")
        assert g["grpo"]["generator"] == ("project" if generator == "project" else "trl")
    if arm.split("_", 1)[1] in ("backspace", "backtrack_token"):   # the erasing arms: erase decoding too
        assert c["eval"]["extra_decodings"] == {"erase": {}}


@pytest.mark.parametrize("flag, bad", [("--arms", "c3_dirct"), ("--grpo-generators", "trl,vllm")])
def test_an_unknown_arm_or_generator_is_refused_by_name(flag, bad):
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_study", "--smoke", flag, bad], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and bad.split(",")[-1] in r.stderr, r.stderr


def test_each_grpo_generator_has_its_own_run_directory():
    names = {gpu_study.grpo_run("c3_backspace", gen) for gen in gpu_study.GRPO_GENERATORS}
    assert len(names) == len(gpu_study.GRPO_GENERATORS) and "c3_backspace_grpo" in names   # trl's name as before


@pytest.mark.slow
def test_smoke_runs_every_stage_and_writes_one_table(tmp_path):
    out = tmp_path / "study"
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_study", "--smoke", "--out", str(out),
                        "--cache", str(tmp_path / "cache")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = (out / "table.md").read_text()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| c3_")]
    assert [(x[0], x[1], x[2]) for x in rows] == [("| c3_direct", "SFT", "ok"), ("| c3_backspace", "SFT", "ok"),
                                                  ("| c3_backspace", "SFT+GRPO", "ok")]
    cols = gpu_study.COLUMNS
    for x in rows:
        assert x[cols.index("accuracy")] and x[cols.index("decode tokens/s")]   # evaluated, with its speed
    assert rows[1][cols.index("erase accuracy")] and rows[1][cols.index("SFT tokens/s")]   # erasing arm: erase too
    assert rows[2][cols.index("GRPO completions/s")]
    assert "the trainer runs at" in table                       # the plain-loop ratio
    assert (out / "report.md").exists() and (out / "runs" / "c3_backspace_grpo" / "metrics.json").exists()
    assert table in r.stdout


# ----------------------------------------------------------------------------- make wheelhouse

def test_make_wheelhouse_downloads_every_pinned_requirement_but_torch_for_the_chosen_python(tmp_path):
    """``make -n`` prints the commands without running them (nothing is downloaded here)."""
    import shutil
    if shutil.which("make") is None:
        pytest.skip("no make")
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: make -n does not print the install step
    r = subprocess.run(["make", "-n", "wheelhouse", f"STAMP={stamp}", "PY=python", "WHEEL_PYTHON=3.12",
                        "WHEELHOUSE=/tmp/wh"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\\\n", " ").splitlines()
    download = next(line for line in lines if "pip download" in line).split()
    assert download[download.index("--python-version") + 1] == "3.12"
    platforms = [download[i + 1] for i, w in enumerate(download) if w == "--platform"]
    assert "manylinux2014_x86_64" in platforms and "manylinux_2_28_x86_64" in platforms
    assert {"--no-deps", "--prefer-binary"} <= set(download)           # exactly the pinned list, wheels first
    assert download[download.index("-r") + 1] == "/tmp/wh/requirements.txt"
    assert any("benchmarks.wheelhouse" in line and "> /tmp/wh/requirements.txt" in line for line in lines)
    assert any("pip wheel --no-deps" in line and "/tmp/wh" in line for line in lines)   # the project's own wheel


def test_the_wheelhouse_requirements_pin_the_training_stack_and_leave_torch_out():
    from benchmarks.wheelhouse import closure
    pins = closure()
    for name in ("trl", "transformers", "datasets", "hydra-core", "peft", "accelerate"):   # what gpu_study runs
        assert name in pins
    assert not [n for n in pins if n == "torch" or n.startswith("nvidia-") or n == "triton"]
    assert "backspace" not in pins                          # the project's own wheel is built, not downloaded


@pytest.mark.parametrize("only, expected", [
    ("trl transformers", ["transformers==", "trl=="]),          # names as make passes them, sorted
    ("hydra_core,Omegaconf", ["hydra-core==", "omegaconf=="]),  # any spelling of a name
])
def test_wheelhouse_only_prints_the_named_pins(only, expected):
    r = subprocess.run([sys.executable, "-m", "benchmarks.wheelhouse", "--only", only], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert [line.split("==")[0] + "==" for line in lines] == expected and all("==" in x for x in lines)


def test_wheelhouse_only_refuses_a_name_the_project_does_not_need():
    r = subprocess.run([sys.executable, "-m", "benchmarks.wheelhouse", "--only", "trl,vllm"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "vllm" in r.stderr


def test_the_gpu_session_script_parses_and_make_gpu_wheels_is_well_formed(tmp_path):
    import shutil
    r = subprocess.run(["bash", "-n", "benchmarks/gpu_session.sh"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("make") is None:
        pytest.skip("no make")
    stamp = tmp_path / "installed"
    stamp.touch()
    r = subprocess.run(["make", "-n", "gpu-wheels", f"STAMP={stamp}", "PY=python"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    download = next(line for line in r.stdout.replace("\\\n", " ").splitlines() if "pip download" in line).split()
    assert download[download.index("--python-version") + 1] == "3.12"   # the GPU image's Python
    assert "--only" in r.stdout and "trl" in r.stdout


@pytest.mark.slow
def test_the_gpu_session_script_rehearsed_on_the_cpu_returns_every_file(tmp_path):
    """benchmarks/gpu_session.sh is what one device call runs, with no second try: REHEARSE=1
    runs all of it here with tiny sizes (decode benchmarks, the study, countdown4_gpu shrunk)
    and every file it promises comes back, each with what it should hold."""
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**__import__("os").environ, "REHEARSE": "1", "PY": sys.executable, "WHL": str(tmp_path / "no_wheels"),
           "OUT": str(out), "WORK": str(work), "BUDGET": "400"}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    assert files == {"machine.txt", "decode_bench.txt", "grpo_bench.txt", "table.md", "report.md",
                     "countdown4_metrics.json", "session.tar.gz", "session.log"}   # 8: what a device call returns
    assert "torch" in (out / "machine.txt").read_text()
    decoding = (out / "decode_bench.txt").read_text()
    parts = decoding.split("--- ")
    assert len(parts) == 3, decoding                    # on the device; by the host; before/after
    for part, modes in zip(parts, (("model.generate", "visible", "erase"), ("erase",), ("visible", "erase"))):
        assert all(f" {mode} " in part for mode in modes) and "tok/s" in part, part
    assert parts[2].count("decode benchmark:") == 2     # now, and the loops of before
    grpo = (out / "grpo_bench.txt").read_text()
    assert all(f"| {g} | " in grpo for g in ("trl", "project", "trl_cb")), grpo   # a row of the table each
    table = (out / "table.md").read_text()
    assert "| c3_direct | SFT | ok |" in table and "| c3_backspace | SFT | ok |" in table, table
    assert 0.0 <= json.loads((out / "countdown4_metrics.json").read_text())["accuracy"] <= 1.0
