"""python -m train.report: the table and plots of a sweep, on fake run directories and on a real
two-job sweep through the joblib launcher."""

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

pytest.importorskip("matplotlib")


def fake_run(sweep, name, config, overrides, metrics=None):
    """A run directory as Hydra and python -m train leave it: .hydra/ always, metrics.json
    only when the run finished."""
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def config(style, mask=False, lr=0.0015):
    # `arm` and the interpolations copy a sweep arm into the trainer's sections, as
    # conf/experiment/style_ablation_cpu.yaml does
    return {"arm": {"style": style, "mask_erased": mask},
            "data": {"task": "countdown", "style": "${arm.style}", "n": 300},
            "sft": {"mask_erased": "${arm.mask_erased}", "learning_rate": lr, "max_steps": 10},
            "eval": {"k": [1, 2, 4]}, "seed": 0}


def metrics(acc, p1, p2, p4, tokens, bs):
    return {"accuracy": acc, "pass@1": p1, "pass@2": p2, "pass@4": p4, "mean_completion_tokens": tokens,
            "mean_completion_tokens_sampled": tokens * 1.1, "backspace_use": bs, "malformed_rate": 0.01,
            "no_answer_rate": 0.02, "n_problems": 100, "style": "x"}


@pytest.fixture
def sweep(tmp_path):
    s = tmp_path / "sweep"
    s.mkdir()
    (s / "multirun.yaml").write_text("hydra: {}\n")       # Hydra's file at the sweep's root: not a run
    fake_run(s, "0", config("direct"), ["arm={style:direct}"], metrics(0.25, 0.2, 0.3, 0.4, 60.0, 0.0))
    fake_run(s, "1", config("backspace"), ["arm={style:backspace}"], metrics(0.3, 0.25, 0.35, 0.45, 150.0, 0.33))
    fake_run(s, "2", config("backspace", mask=True), ["arm={style:backspace,mask_erased:true}"])  # failed
    fake_run(s, "10", config("search"), ["arm={style:search}"], metrics(0.125, 0.1, 0.2, 0.3, 200.0, 0.0))
    return s


def rows(report_md):
    """The first markdown table of the text: its head and one dict per row."""
    lines = []
    for line in report_md.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    lines = [line for line in lines if line.startswith("| ")]   # the |---| rule is no row
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return head, [dict(zip(head, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]]


def test_report_table_shows_only_what_varies_and_lists_failed_runs(sweep, tmp_path):
    from train.report import report

    path = report(sweep, tmp_path / "out")
    text = path.read_text()
    head, table = rows(text)
    # style and mask_erased vary (resolved through ${arm.*}, the arm copies left out);
    # data.n, learning_rate, max_steps, eval.k and seed do not
    assert head[:3] == ["run", "style", "mask_erased"]
    assert not {"n", "learning_rate", "max_steps", "k", "seed", "arm.style"} & set(head)
    assert [r["run"] for r in table] == ["0", "1", "2", "10"]             # numeric order, not 0, 1, 10, 2
    assert [r["style"] for r in table] == ["direct", "backspace", "backspace", "search"]
    assert [r["mask_erased"] for r in table] == ["false", "false", "true", "false"]
    assert table[1]["accuracy"] == "0.300" and table[1]["pass@4"] == "0.450"
    assert table[1]["accuracy_95ci"] == "0.219-0.396"                  # Wilson, 30 of 100
    assert table[1]["mean_completion_tokens"] == "150.000" and table[1]["backspace_use"] == "0.330"
    assert table[0]["malformed_rate"] == "0.010" and table[0]["no_answer_rate"] == "0.020"
    assert "failed" in table[2]["status"] and table[2]["accuracy"] == ""
    assert "## Failed runs" in text and "arm={style:backspace,mask_erased:true}" in text
    for png in ("pass_at_k.png", "accuracy_vs_tokens.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000   # a real image, not an empty canvas


def test_report_cli_writes_into_the_sweep_and_refuses_a_missing_dir(sweep, tmp_path):
    r = subprocess.run([sys.executable, "-m", "train.report", str(sweep)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sweep / "report.md")
    assert (sweep / "pass_at_k.png").stat().st_size > 0
    r = subprocess.run([sys.executable, "-m", "train.report", str(tmp_path / "nowhere")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such directory" in r.stderr


def test_report_of_a_sweep_with_no_samples_and_only_failures(tmp_path):
    """Greedy-only runs (eval.num_samples=0) have no pass@k; the plots say so instead of failing."""
    from train.report import report

    s = tmp_path / "s"
    m = {"accuracy": 0.5, "mean_completion_tokens": 40.0, "backspace_use": 0.0, "malformed_rate": 0.0,
         "no_answer_rate": 0.0}
    fake_run(s, "0", config("direct", lr=0.001), ["sft.learning_rate=0.001"], m)
    fake_run(s, "1", config("direct", lr=0.002), ["sft.learning_rate=0.002"])
    head, table = rows(report(s).read_text())
    assert head[1] == "learning_rate" and "pass@1" not in head
    assert table[0]["accuracy"] == "0.500" and "failed" in table[1]["status"]
    assert (s / "pass_at_k.png").stat().st_size > 0 and (s / "accuracy_vs_tokens.png").stat().st_size > 0


def test_extra_decodings_of_a_run_get_rows_of_their_own(tmp_path):
    """A run evaluated with eval.extra_decodings has one more row per mode, ``RUN/mode``, told
    apart by eval.decoding; the extra_decodings keys themselves are no column; self_backtrack's
    equal-compute point uses every token its search sampled."""
    from train import report as rep

    s = tmp_path / "s"
    sb_config = {"erase": {}, "self_backtrack": {"num_samples": 0}}
    c = config("backspace")
    c["arm"]["extra_decodings"] = sb_config
    c["eval"].update(decoding="visible", extra_decodings="${arm.extra_decodings}")
    m = metrics(0.3, 0.25, 0.35, 0.45, 150.0, 0.33)
    m["decodings"] = {"erase": {**metrics(0.32, 0.3, 0.4, 0.5, 120.0, 0.3), "mean_generated_tokens": 120.0},
                      "self_backtrack": {"accuracy": 0.4, "mean_completion_tokens": 140.0,
                                         "mean_generated_tokens": 900.0, "backspace_use": 0.5}}
    fake_run(s, "0", config("direct") | {"eval": {"k": [1, 2, 4], "decoding": "visible"}}, ["arm={style:direct}"],
             metrics(0.25, 0.2, 0.3, 0.4, 60.0, 0.0))
    fake_run(s, "1", c, ["arm={style:backspace,extra_decodings:{erase:{},self_backtrack:{num_samples:0}}}"], m)
    text = rep.report(s).read_text()
    head, table = rows(text)
    assert [r["run"] for r in table] == ["0", "1", "1/erase", "1/self_backtrack"]
    assert [r["decoding"] for r in table] == ["visible", "visible", "erase", "self_backtrack"]
    assert [r["style"] for r in table] == ["direct", "backspace", "backspace", "backspace"]
    assert not any("extra_decodings" in h for h in head)
    assert table[2]["accuracy"] == "0.320" and table[3]["accuracy"] == "0.400" and table[3]["pass@1"] == "-"
    assert table[3]["mean_generated_tokens"] == "900.000"
    assert "2 runs, 2 finished, 0 failed; 2 more rows" in text
    assert text.count("- 1: `arm=") == 1                      # overrides listed once per run
    assert rep.tokens_per_answer(m["decodings"]["self_backtrack"], sampled=False) == 900.0
    assert rep.tokens_per_answer(metrics(0.1, 0.1, 0.1, 0.1, 50.0, 0.0), sampled=True) == pytest.approx(55.0)  # older metrics


def test_equal_compute_table_takes_the_largest_k_that_fits_the_budget(sweep, tmp_path):
    """Run 1: greedy 0.3 at 150 tokens, samples of 165 tokens: pass@1 fits 256, pass@2 (330)
    and pass@4 (660) fit 1024; run 0 (60 and 66 tokens) fits greedy in 64 already."""
    from train.report import budgets_of, report, within_budget

    m = metrics(0.3, 0.25, 0.35, 0.45, 150.0, 0.33)
    assert within_budget(m, 100) is None
    assert within_budget(m, 160) == (0.3, "greedy")                # greedy fits, pass@1 (165) not yet
    assert within_budget(m, 256) == (0.3, "greedy")                # pass@1 0.25 fits but is lower
    assert within_budget(m, 400) == (0.35, "pass@2")
    assert within_budget(m, 1024) == (0.45, "pass@4")
    sb = {"accuracy": 0.4, "decoding": "self_backtrack", "mean_completion_tokens": 90.0, "mean_generated_tokens": 900.0}
    assert within_budget(sb, 512) is None and within_budget(sb, 1024) == (0.4, "selected")
    text = report(sweep, tmp_path / "out").read_text()
    section = text.split("## At equal test-time compute")[1].split("![")[0]
    head, table = rows(section)
    assert head[1:] == [f"<= {b}" for b in budgets_of([{"metrics": metrics(0.25, 0.2, 0.3, 0.4, 60.0, 0.0)},
                                                         {"metrics": metrics(0.125, 0.1, 0.2, 0.3, 200.0, 0.0)}])]
    assert head[1] == "<= 64" and head[-1] == "<= 1024"            # 60 tokens up to 4 x 220
    by_run = {r["run"].split(":")[0]: r for r in table}
    assert set(by_run) == {"0", "1", "10"}                          # the failed run has no row
    assert by_run["0"]["<= 64"] == "0.250 (greedy)" and by_run["1"]["<= 64"] == "-"
    assert by_run["1"]["<= 1024"] == "0.450 (pass@4)"


def test_runs_that_differ_only_in_seed_are_averaged(tmp_path):
    from train.report import report

    s = tmp_path / "s"
    for i, (style, seed, acc) in enumerate([("direct", 0, 0.1), ("direct", 1, 0.2), ("search", 0, 0.3),
                                            ("search", 1, 0.5), ("search", 2, 0.4)]):
        c = config(style) | {"seed": seed}
        fake_run(s, str(i), c, [f"arm={{style:{style}}}", f"seed={seed}"], metrics(acc, acc, acc, 0.6, 50.0, 0.0))
    text = report(s).read_text()
    head, table = rows(text.split("## Over seeds")[1])
    assert head == ["style", "seeds", "accuracy mean", "min-max", "pass@1 mean", "pass@2 mean", "pass@4 mean"]
    assert table == [
        {"style": "direct", "seeds": "2", "accuracy mean": "0.150", "min-max": "0.100-0.200", "pass@1 mean": "0.150",
         "pass@2 mean": "0.150", "pass@4 mean": "0.600"},
        {"style": "search", "seeds": "3", "accuracy mean": "0.400", "min-max": "0.300-0.500", "pass@1 mean": "0.400",
         "pass@2 mean": "0.400", "pass@4 mean": "0.600"}]
    fake = tmp_path / "one_seed"                                   # no seed column: no such section
    fake_run(fake, "0", config("direct"), [], metrics(0.1, 0.1, 0.1, 0.1, 50.0, 0.0))
    fake_run(fake, "1", config("search"), [], metrics(0.1, 0.1, 0.1, 0.1, 50.0, 0.0))
    assert "## Over seeds" not in report(fake).read_text()


def test_joblib_sweep_of_two_jobs_then_its_report(tmp_path):
    """A real two-job multirun through hydra-joblib-launcher (two local processes), then the report."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from train.report import report

    sweep = tmp_path / "sweep"
    r = subprocess.run(
        [sys.executable, "-m", "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "experiment=smoke", "data.style=backspace,direct", "grpo.enabled=false", "sft.max_steps=2",
         "eval.n_problems=2", "eval.max_new_tokens=32", "data.n=60", "data.n_test=4",
         f"hydra.sweep.dir={sweep}", f"data.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Joblib.Parallel" in r.stdout + r.stderr     # the joblib launcher ran it, not the basic one
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    head, table = rows(report(sweep).read_text())
    assert head[1] == "style" and {row["style"] for row in table} == {"backspace", "direct"}
    assert all(row["status"] == "ok" and row["accuracy"] != "" for row in table)


@pytest.mark.parametrize("launcher, plugin, target", [
    ("local", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),   # the cluster extra
])
def test_launcher_presets_select_their_hydra_launcher(launcher, plugin, target):
    pytest.importorskip(plugin)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"launcher={launcher}", "experiment=style_ablation_cpu"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper.params.arm.startswith("choice(")   # the preset still sweeps its arms
