"""python -m benchmarks.gpu_study --minutes 8 [--out DIR]: the style study at GPU scale, in one job.

Every arm is its own ``python -m train`` process (experiment=style_ablation_gpu plus the arm's
overrides), all started together so that they share the GPU; each arm's SFT is bounded by
``sft.max_minutes`` so that the whole job ends within ``--minutes``:

- stage 1, SFT then evaluation (greedy + samples; erasing arms again with eval.decoding=erase):
  direct, search, backspace and backtrack_token on 3-number Countdown (``c3_*``), direct and
  backspace on 4-number Countdown (``c4_*``);
- stage 2, time permitting: GRPO from the SFT checkpoints of ``--grpo-arms`` (3-number direct
  and backspace), then the same evaluation; one run per arm and ``--grpo-generators`` entry
  (``trl``, TRL's model.generate; ``trl_cb``, its continuous batching; ``project``,
  grpo.generator=project), all in parallel, so that their ``GRPO completions/s`` compare;
- stage 3, time permitting: the trainer's SFT tokens/s beside a plain PyTorch loop over the same
  batches and model (benchmarks/plain_loop.py), alone on the device.

A process still running at its stage's deadline is stopped and listed as timed out. The runs go
to ``DIR/runs/<arm>``, ``python -m train.report`` writes ``DIR/report.md`` (and its plots), and
one table (accuracy, pass@k, tokens, backspace use, SFT tokens/s, decode tokens/s, GRPO
completions/s, seconds per stage) goes to ``DIR/table.md`` and the screen.

``--smoke``: the same path on the CPU with tiny sizes (two arms, a GRPO stage of one step for
one of them) in a couple of minutes; the tests run it.

The time split (a share of ``--minutes`` for each stage) is arithmetic, not measurement: the
first GPU run will say how it should change (docs/study-gpu.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

C4 = ["data.task_options.countdown.n_numbers=4", "data.n=40000", "eval.max_new_tokens=768"]
ERASE = "arm.extra_decodings={erase:{}}"
ARMS = {  # name -> overrides on top of experiment=style_ablation_gpu
    "c3_direct": ["arm.style=direct"],
    "c3_search": ["arm.style=search"],
    "c3_backspace": ["arm.style=backspace", ERASE],
    "c3_backtrack_token": ["arm.style=backtrack_token", ERASE],
    "c4_direct": ["arm.style=direct", *C4],
    "c4_backspace": ["arm.style=backspace", ERASE, *C4],
}
GRPO_ARMS = ("c3_direct", "c3_backspace")
SMOKE_ARMS = ("c3_direct", "c3_backspace")
# who writes GRPO's completions (benchmarks/grpo_bench.py uses the same names): overrides of each
GRPO_GENERATORS = {"trl": [], "trl_cb": ["grpo.use_transformers_continuous_batching=true"],
                   "project": ["grpo.generator=project"]}

# The study's evaluation: 300 held-out puzzles, 1 greedy + 4 samples each, rows in batches of 512.
STUDY = ["eval.n_problems=300", "eval.num_samples=4", "eval.k=[1,2,4]", "eval.batch_size=512",
         "sft.max_steps=100000", "sft.warmup_steps=100", "grpo.enabled=false"]
# Tiny sizes for --smoke: seconds per stage on two CPU cores.
SMOKE = ["hardware=cpu", "data.n=120", "data.n_val=0", "data.n_test=8", "data.task_options.countdown.n_numbers=3",
         "model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=1",
         "model.num_attention_heads=2", "model.num_key_value_heads=2", "sft.max_steps=6",
         "sft.per_device_train_batch_size=8", "sft.warmup_steps=0", "sft.logging_steps=3", "sft.disable_tqdm=true",
         "eval.n_problems=4", "eval.num_samples=2", "eval.k=[1,2]", "eval.max_new_tokens=24", "eval.batch_size=8",
         "grpo.enabled=false"]
SMOKE_GRPO = ["grpo.max_steps=1", "grpo.per_device_train_batch_size=4", "grpo.num_generations=2",
              "grpo.max_completion_length=16", "grpo.logging_steps=1"]

# Shares of --minutes: the SFT stage's SFT (data generation and evaluation come on top, inside
# the stage's deadline), the SFT stage, GRPO's own training, and what stage 3 needs.
SFT_SHARE, STAGE1_SHARE, GRPO_SHARE, RATIO_SHARE = 0.40, 0.70, 0.10, 0.08


def grpo_run(arm: str, generator: str) -> str:
    """The run directory's name of ``arm``'s GRPO stage with ``generator`` (trl: ``<arm>_grpo``, as before)."""
    return f"{arm}_grpo" if generator == "trl" else f"{arm}_grpo_{generator}"


def train_command(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "train", "experiment=style_ablation_gpu", f"hydra.run.dir={run_dir}", *overrides]


def launch(jobs: dict[str, list[str]], deadline: float, logs: Path) -> dict[str, dict]:
    """Run ``jobs`` (name -> command) as parallel processes until each ends or ``deadline``
    (time.monotonic()) passes; a process still running then is stopped with its children."""
    logs.mkdir(parents=True, exist_ok=True)
    procs, status = {}, {}
    for name, cmd in jobs.items():
        log = open(logs / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True), log, time.monotonic())
    while procs:
        for name in list(procs):
            p, log, t0 = procs[name]
            rc = p.poll()
            late = rc is None and time.monotonic() > deadline
            if late:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: the run and whatever it started
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            if rc is not None or late:
                log.close()
                status[name] = {"status": "timed out" if late else ("ok" if rc == 0 else f"failed (exit {rc})"),
                                "wall_seconds": round(time.monotonic() - t0, 1)}
                del procs[name]
        time.sleep(0.5)
    return status


def decode_rate(m: dict) -> float | None:
    """Generated tokens per second of a run's main evaluation (greedy + samples)."""
    if not m.get("eval_seconds"):
        return None
    tokens = m["n_problems"] * (m["mean_generated_tokens"] + m["num_samples"] * m.get("mean_generated_tokens_sampled", 0))
    return tokens / m["eval_seconds"]


COLUMNS = ["arm", "stage", "status", "accuracy", "pass@k", "erase accuracy", "tokens", "backspace use",
           "SFT tokens/s", "decode tokens/s", "erase decode tokens/s", "GRPO completions/s",
           "SFT s", "GRPO s", "eval s", "wall s"]


def row(arm: str, stage: str, run_dir: Path, status: dict) -> list[str]:
    path = run_dir / "metrics.json"
    m = json.loads(path.read_text()) if path.exists() else {}
    erase = (m.get("decodings") or {}).get("erase") or {}
    ks = sorted(int(k.split("@")[1]) for k in m if k.startswith("pass@"))

    def f(x, fmt):
        return "" if x is None else format(x, fmt)
    eval_s = (m.get("eval_seconds") or 0) + (erase.get("eval_seconds") or 0) if m else None
    return [arm, stage, status.get("status", "not run"), f(m.get("accuracy"), ".3f"),
            f"{m[f'pass@{ks[-1]}']:.3f} (k={ks[-1]})" if ks else "", f(erase.get("accuracy"), ".3f"),
            f(m.get("mean_completion_tokens"), ".0f"), f(m.get("backspace_use"), ".2f"),
            f(m.get("sft_tokens_per_second"), ".0f"), f(decode_rate(m), ".0f"), f(decode_rate(erase), ".0f"),
            f(m.get("grpo_completions_per_second"), ".2f"), f(m.get("sft_seconds"), ".0f"),
            f(m.get("grpo_seconds"), ".0f"), f(eval_s or None, ".0f"), f(status.get("wall_seconds"), ".0f")]


def markdown(rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def sft_ratio(out: Path, overrides: list[str], steps: int, deadline: float) -> str:
    """Stage 3: a short SFT run through the trainer, then the plain loop over its batches."""
    run_dir = out / "ratio"
    cmd = train_command(run_dir, [*overrides, f"sft.max_steps={steps}", "sft.max_minutes=null",
                                  "eval.enabled=false", "grpo.enabled=false"])
    status = launch({"ratio": cmd}, deadline, out / "logs")["ratio"]
    if status["status"] != "ok":
        return f"SFT against the plain loop: the trainer's run {status['status']} (logs/ratio.log)"
    plain = subprocess.run([sys.executable, "-c", "import json, sys; from benchmarks import plain_loop; "
                            f"print(json.dumps(plain_loop.for_run({str(run_dir)!r})))"],
                           cwd=ROOT, capture_output=True, text=True, timeout=max(1, deadline - time.monotonic()))
    if plain.returncode:
        return f"SFT against the plain loop: the plain loop failed: {plain.stderr.strip().splitlines()[-1:]}"
    p = json.loads(plain.stdout.strip().splitlines()[-1])
    m = json.loads((run_dir / "metrics.json").read_text())
    return (f"SFT, {m['sft_steps']} steps alone on the device: trainer {m['sft_tokens_per_second']:.0f} tokens/s, "
            f"plain PyTorch loop over the same batches and model {p['tokens_per_second']:.0f} tokens/s: the trainer "
            f"runs at {m['sft_tokens_per_second'] / p['tokens_per_second']:.2f}x the plain loop's rate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_study", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="the whole job's time (default 8; --smoke: 4)")
    parser.add_argument("--out", type=Path, default=None, help="where runs, report.md and table.md go "
                        "(default outputs/gpu_study/<time>)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: the same path in minutes")
    parser.add_argument("--arms", default=None, help=f"comma-separated, of {', '.join(ARMS)} (default: all; "
                        f"--smoke: {', '.join(SMOKE_ARMS)})")
    parser.add_argument("--grpo-arms", default=None, help="arms that get a GRPO stage after SFT (default "
                        f"{', '.join(GRPO_ARMS)}; --smoke: c3_backspace; '' for none)")
    parser.add_argument("--grpo-generators", default=None, help="comma-separated, of "
                        f"{', '.join(GRPO_GENERATORS)}: one GRPO run per arm and generator, side by side "
                        "(default trl)")
    parser.add_argument("--grpo-continuous-batching", action="store_true", help="the same as "
                        "--grpo-generators trl_cb (TRL's use_transformers_continuous_batching)")
    parser.add_argument("--cache", default="data/generated/cache", help="data.cache_dir of every run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for every run")
    args = parser.parse_args(argv)

    minutes = args.minutes or (4.0 if args.smoke else 8.0)
    arms = (args.arms.split(",") if args.arms else list(SMOKE_ARMS if args.smoke else ARMS))
    grpo_arms = [a for a in (args.grpo_arms.split(",") if args.grpo_arms is not None
                             else (["c3_backspace"] if args.smoke else list(GRPO_ARMS))) if a]
    for a in arms + grpo_arms:
        if a not in ARMS:
            parser.error(f"--arms / --grpo-arms: unknown arm {a!r} (one of {', '.join(ARMS)})")
    generators = (args.grpo_generators.split(",") if args.grpo_generators
                  else ["trl_cb"] if args.grpo_continuous_batching else ["trl"])
    for gen in generators:
        if gen not in GRPO_GENERATORS:
            parser.error(f"--grpo-generators: unknown generator {gen!r} (one of {', '.join(GRPO_GENERATORS)})")
    out = (args.out or ROOT / "outputs" / "gpu_study" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    runs = out / "runs"
    t0 = time.monotonic()
    end = t0 + 60 * minutes
    common = (SMOKE if args.smoke else STUDY) + [f"data.cache_dir={args.cache}", "sft.save_strategy=no"] + args.set
    if not args.smoke:
        common.append("hardware=gpu")

    print(f"gpu_study: {len(arms)} arms in parallel, {minutes} minutes in all -> {out}", flush=True)
    sft_minutes = round(SFT_SHARE * minutes, 2)
    stage1 = {a: train_command(runs / a, [*ARMS[a], *common, f"sft.max_minutes={sft_minutes}"]) for a in arms}
    status = launch(stage1, t0 + 60 * STAGE1_SHARE * minutes, out / "logs")
    for a in arms:
        print(f"  stage 1 {a}: {status[a]['status']} in {status[a]['wall_seconds']} s", flush=True)

    left = end - time.monotonic() - 60 * RATIO_SHARE * minutes
    ready = [a for a in grpo_arms if a in arms and (runs / a / "sft").is_dir()]
    grpo_status, grpo_of = {}, {}
    if ready and left > 60 * 2 * GRPO_SHARE * minutes:
        grpo_minutes = round(min(GRPO_SHARE * minutes, left / 60 / 2), 2)
        extra = SMOKE_GRPO if args.smoke else []
        stage2 = {grpo_run(a, gen): train_command(runs / grpo_run(a, gen), [
            *ARMS[a], *common, "sft.enabled=false", "grpo.enabled=true", f"init_from={runs / a / 'sft'}",
            f"grpo.max_minutes={grpo_minutes}", *extra, *GRPO_GENERATORS[gen]]) for a in ready for gen in generators}
        grpo_of = {grpo_run(a, gen): (a, gen) for a in ready for gen in generators}
        grpo_status = launch(stage2, time.monotonic() + left, out / "logs")
        for a, s in grpo_status.items():
            print(f"  stage 2 {a}: {s['status']} in {s['wall_seconds']} s", flush=True)
    elif grpo_arms:
        print(f"  stage 2 (GRPO) skipped: {max(0, left):.0f} s left, or no SFT checkpoint of {', '.join(grpo_arms)}")

    ratio_arm = "c3_backspace" if "c3_backspace" in arms else arms[0]
    ratio = "SFT against the plain loop: skipped (no time left)"
    left = end - time.monotonic()
    if left > 20:
        ratio = sft_ratio(out, [*ARMS[ratio_arm], *common], 6 if args.smoke else 200, end)

    rows = [row(a, "SFT", runs / a, status[a]) for a in arms]
    rows += [row(grpo_of[name][0], "SFT+GRPO" + ("" if grpo_of[name][1] == "trl" else f" ({grpo_of[name][1]})"),
                 runs / name, s) for name, s in grpo_status.items()]
    table = markdown(rows)
    try:
        from train.report import report
        report_path = report(runs, out)
    except Exception as e:  # the table still stands; say why the report is missing
        report_path = f"not written: {e}"
    total = time.monotonic() - t0
    text = (f"# gpu_study ({'smoke, CPU' if args.smoke else 'GPU'}), {total:.0f} s of {60 * minutes:.0f}\n\n"
            f"{table}\n\n{ratio}\n\nSFT s, GRPO s: inside the trainers; eval s: greedy + samples (+ erase "
            f"decoding); wall s: the whole process (data, model, stages). Report: {report_path}\n")
    (out / "table.md").write_text(text)
    print(text)
    print(out)
    return 0 if all(s["status"] == "ok" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
