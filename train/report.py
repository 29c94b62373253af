"""python -m train.report SWEEP_DIR [--out DIR]: one table and two plots for a multirun sweep.

Reads every run directory under SWEEP_DIR (Hydra's ``multirun/train/<time>``: one folder per
job, each with ``.hydra/config.yaml`` and ``overrides.yaml``, and ``metrics.json`` once the
run finished) and writes to DIR (default: SWEEP_DIR):

- ``report.md``: one row per run: the config keys whose values differ between the runs
  (only those), then greedy accuracy, pass@k, mean completion tokens, backspace use and the
  malformed / no-answer rates. A run without ``metrics.json`` is listed as failed.
- ``pass_at_k.png``: pass@k against k, one line per run.
- ``accuracy_vs_tokens.png``: accuracy against generated tokens per problem. pass@k of a
  run costs k samples, so its point sits at k x the run's mean sampled completion length
  (for self_backtrack: every token its run sampled, ``mean_generated_tokens``): a run whose
  traces are twice as long is compared with a run that samples twice, at equal test-time
  compute. The greedy accuracy is the hollow marker. A run evaluated with more decodings
  (``eval.extra_decodings``) gets one more row and line per decoding, ``RUN/mode``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# The trainer's own config sections: where a value is copied under another key as well
# (an experiment's ``arm.style`` feeding ``data.style``), the column under these is kept.
SECTIONS = ("data", "model", "tokenizer", "peft", "quant", "hardware", "sft", "grpo", "eval", "seed", "init_from")
RATES = ["mean_completion_tokens", "mean_completion_tokens_sampled", "mean_generated_tokens", "backspace_use",
         "malformed_rate", "no_answer_rate", "loop_rate"]


def with_decodings(runs: list[dict]) -> list[dict]:
    """Each run, then one row per extra decoding it was evaluated with (``eval.extra_decodings``:
    the same checkpoint, ``metrics["decodings"][mode]``), named ``RUN/mode`` and told apart by
    ``eval.decoding``. The extra_decodings keys themselves are no column."""
    out = []
    for r in runs:
        config = {k: v for k, v in r["config"].items() if "extra_decodings" not in k.split(".")}
        out.append({**r, "config": config})
        for mode, m in ((r["metrics"] or {}).get("decodings") or {}).items():
            out.append({**r, "name": f"{r['name']}/{mode}", "metrics": m, "extra": True,
                        "config": {**config, "eval.decoding": mode}})
    return out


def tokens_per_answer(m: dict, sampled: bool) -> float | None:
    """Tokens generated for one answer: everything a self_backtrack run sampled, else the
    completion's own tokens (reports written before mean_generated_tokens existed)."""
    suffix = "_sampled" if sampled else ""
    return m.get(f"mean_generated_tokens{suffix}") or m.get(f"mean_completion_tokens{suffix}")


def find_runs(sweep: Path) -> list[Path]:
    """Every directory under ``sweep`` (itself included) that Hydra ran a job in, or that holds
    ``metrics.json``; job folders ``0, 1, ..., 10`` in numeric order."""
    dirs = {p.parent for p in sweep.rglob(".hydra") if p.is_dir()}
    dirs |= {p.parent for p in sweep.rglob("metrics.json")}
    return sorted(dirs, key=lambda d: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(d))])


def flatten(node, prefix: str = "") -> dict:
    """{"data": {"style": "direct"}} -> {"data.style": "direct"}; lists stay values."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def read_config(run: Path) -> dict:
    """The run's config, resolved where it can be: Hydra's ``.hydra/config.yaml`` (written
    before the job starts, so failed runs have it too), else the trainer's ``config.json``."""
    from omegaconf import OmegaConf

    path = run / ".hydra" / "config.yaml"
    if path.exists():
        cfg = OmegaConf.load(path)
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # an interpolation this process cannot resolve: show it as written
            return OmegaConf.to_container(cfg, resolve=False)
    if (run / "config.json").exists():
        return json.loads((run / "config.json").read_text())
    return {}


def read_run(run: Path, sweep: Path) -> dict:
    overrides = []
    if (run / ".hydra" / "overrides.yaml").exists():
        from omegaconf import OmegaConf
        overrides = list(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
    metrics = None
    if (run / "metrics.json").exists():
        try:
            metrics = json.loads((run / "metrics.json").read_text())
        except json.JSONDecodeError:
            metrics = None
    name = str(run.relative_to(sweep)) if run != sweep else run.name
    return {"dir": run, "name": name, "overrides": overrides, "metrics": metrics,
            "config": flatten(read_config(run))}


def varying_keys(runs: list[dict]) -> list[str]:
    """The config keys whose values are not the same in every run, one column per distinct
    partition of values: a key that only copies another (``arm.style`` -> ``data.style``) is
    left out, the copy in the trainer's own sections kept."""
    keys = sorted({k for r in runs for k in r["config"]})
    columns: dict[tuple, str] = {}
    for key in keys:
        values = tuple(json.dumps(r["config"].get(key), sort_keys=True) for r in runs)
        if len(set(values)) < 2:
            continue
        kept = columns.get(values)
        if kept is None or (kept.split(".")[0] not in SECTIONS and key.split(".")[0] in SECTIONS):
            columns[values] = key
    return sorted(columns.values())


VAGUE = ("enabled", "n", "path", "kind")  # last parts that say nothing alone: grpo.enabled stays whole


def short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key where that is unique among ``keys`` and says something
    alone, else the whole key."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 and s not in VAGUE else k) for k, s in zip(keys, last)}


def pass_ks(metrics: dict) -> list[int]:
    return sorted(int(k[5:]) for k in metrics if k.startswith("pass@") and k[5:].isdigit())


def wilson(p: float, n: int | None, z: float = 1.96) -> str | None:
    """The Wilson 95% interval of a greedy accuracy ``p`` on ``n`` problems, as "lo-hi": how far
    apart two rows must be before the difference means something.

    >>> wilson(0.2, 300), wilson(0.0, 100), wilson(0.5, None)
    ('0.159-0.249', '0.000-0.037', None)
    """
    if not n:
        return None
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return f"{max(0.0, centre - half):.3f}-{min(1.0, centre + half):.3f}"


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value).replace("|", "\\|")


def label(run: dict, keys: list[str], names: dict[str, str], common: dict[str, str] | None = None) -> str:
    """``RUN: key=value, ...`` over the varying keys; given each key's ``common`` (most frequent)
    value, only the values that differ from it (``style`` always), so legends stay short."""
    parts = [f"{names[k]}={fmt(run['config'].get(k))}" for k in keys
             if common is None or names[k] == "style" or fmt(run["config"].get(k)) != common[k]]
    return f"{run['name']}: " + (", ".join(parts) if parts else "(no differences)")


def most_common(runs: list[dict], keys: list[str]) -> dict[str, str]:
    """Each key's most frequent formatted value over ``runs``."""
    out = {}
    for k in keys:
        values = [fmt(r["config"].get(k)) for r in runs]
        out[k] = max(values, key=values.count)
    return out


def table(runs: list[dict], keys: list[str], names: dict[str, str]) -> str:
    done = [r["metrics"] for r in runs if r["metrics"]]
    ks = sorted({k for m in done for k in pass_ks(m)})
    metric_cols = ["accuracy", "accuracy_95ci"] + [f"pass@{k}" for k in ks] + [c for c in RATES if any(c in m for m in done)]
    head = ["run"] + [names[k] for k in keys] + ["status"] + metric_cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [r["name"]] + [fmt(r["config"].get(k)) for k in keys]
        if r["metrics"] is None:
            cells += ["**failed** (no metrics.json; or still running)"] + [""] * len(metric_cols)
        elif "accuracy" not in r["metrics"]:
            cells += ["trained, not evaluated"] + [fmt(r["metrics"].get(c)) for c in metric_cols]
        else:
            m = {**r["metrics"], "accuracy_95ci": wilson(r["metrics"]["accuracy"], r["metrics"].get("n_problems"))}
            cells += ["ok"] + [fmt(m.get(c)) for c in metric_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budgets_of(runs: list[dict]) -> list[int]:
    """Powers of two from the cheapest answer of any run to the dearest pass@k of any run."""
    costs = []
    for r in runs:
        m = r["metrics"] or {}
        if "accuracy" in m:
            costs.append(tokens_per_answer(m, sampled=False) or 1)
            per = tokens_per_answer(m, sampled=True)
            costs += [k * per for k in pass_ks(m) if per]
    if not costs:
        return []
    lo, hi = max(1, int(min(costs))).bit_length(), max(1, int(max(costs))).bit_length()
    return [2 ** b for b in range(lo, hi + 1)]


def within_budget(m: dict, budget: float) -> tuple[float, str] | None:
    """The best a run does with at most ``budget`` generated tokens per problem, no
    interpolation: greedy accuracy (self_backtrack: its one selected answer) if the mean
    greedy answer fits, pass@k for the largest k whose k samples fit. pass@k is an oracle
    (any of k right counts); greedy and self_backtrack pick one answer without one."""
    options = []
    greedy_cost = tokens_per_answer(m, sampled=False)
    if greedy_cost is not None and greedy_cost <= budget:
        options.append((m["accuracy"], "greedy" if m.get("decoding") != "self_backtrack" else "selected"))
    per = tokens_per_answer(m, sampled=True)
    fits = [k for k in pass_ks(m) if per and k * per <= budget]
    if fits:
        options.append((m[f"pass@{max(fits)}"], f"pass@{max(fits)}"))
    return max(options) if options else None


def budget_table(runs: list[dict], labels: dict[str, str]) -> str:
    done = [r for r in runs if r["metrics"] and "accuracy" in r["metrics"]]
    budgets = budgets_of(done)
    if not budgets:
        return "(no evaluated run)"
    lines = ["| run | " + " | ".join(f"<= {b}" for b in budgets) + " |", "|" + "---|" * (len(budgets) + 1)]
    for r in done:
        cells = []
        for b in budgets:
            best = within_budget(r["metrics"], b)
            cells.append("-" if best is None else f"{best[0]:.3f} ({best[1]})")
        lines.append(f"| {labels[r['name']]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(runs: list[dict], keys: list[str], names: dict[str, str]) -> str | None:
    """When ``seed`` is among the varying keys: one row per group of runs that differ only in
    their seed, with the number of seeds, the mean and range of greedy accuracy and the mean of
    each pass@k. None when no key called seed varies."""
    if "seed" not in keys:
        return None
    others = [k for k in keys if k != "seed"]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r["metrics"] and "accuracy" in r["metrics"]:
            groups.setdefault(tuple(fmt(r["config"].get(k)) for k in others), []).append(r)
    ks = sorted({k for rs in groups.values() for r in rs for k in pass_ks(r["metrics"])})
    head = [names[k] for k in others] + ["seeds", "accuracy mean", "min-max"] + [f"pass@{k} mean" for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for values, rs in groups.items():
        accs = [r["metrics"]["accuracy"] for r in rs]
        cells = list(values) + [str(len(rs)), fmt(sum(accs) / len(accs)), f"{min(accs):.3f}-{max(accs):.3f}"]
        for k in ks:
            got = [r["metrics"][f"pass@{k}"] for r in rs if f"pass@{k}" in r["metrics"]]
            cells.append(fmt(sum(got) / len(got)) if got else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _style(i: int) -> dict:
    """Line i's colour and dash: ten colours, then the same ten dashed, then dotted."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":")[(i // 10) % 3]}


def _legend(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _figure():
    """A blank figure drawn without a display (the Agg backend: runs on clusters too)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 5))
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> None:
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pass_at_k(runs: list[dict], labels: dict[str, str], path: Path) -> None:
    plt, fig, ax = _figure()
    drawn = 0
    for r in runs:
        m = r["metrics"] or {}
        ks = pass_ks(m)
        if ks:
            ax.plot(ks, [m[f"pass@{k}"] for k in ks], marker="o", label=labels[r["name"]], **_style(drawn))
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no run has pass@k (eval.num_samples=0, or every run failed)",
                ha="center", va="center", transform=ax.transAxes)
    else:
        all_ks = sorted({k for r in runs for k in pass_ks(r["metrics"] or {})})
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_ks, [str(k) for k in all_ks])
        _legend(ax)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    _save(plt, fig, ax, path)


def plot_accuracy_vs_tokens(runs: list[dict], labels: dict[str, str], path: Path) -> None:
    plt, fig, ax = _figure()
    drawn = 0
    for r in runs:
        m = r["metrics"] or {}
        if "accuracy" not in m:
            continue
        style = _style(drawn)
        color = style["color"]
        per_sample = tokens_per_answer(m, sampled=True) or tokens_per_answer(m, sampled=False)
        greedy_x = tokens_per_answer(m, sampled=False)
        ks = pass_ks(m)
        if ks and per_sample:
            ax.plot([k * per_sample for k in ks], [m[f"pass@{k}"] for k in ks], marker="o", **style,
                    label=labels[r["name"]])
            ax.scatter([greedy_x], [m["accuracy"]], facecolors="none", edgecolors=color)
        else:
            ax.scatter([greedy_x], [m["accuracy"]], facecolors="none", edgecolors=color,
                       label=labels[r["name"]])
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no evaluated run", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log")
        _legend(ax)
    ax.set_xlabel("generated tokens per problem (k x mean sampled completion; hollow: greedy)")
    ax.set_ylabel("pass@k (filled) / greedy accuracy (hollow)")
    _save(plt, fig, ax, path)


def report(sweep: Path, out: Path | None = None) -> Path:
    """Write report.md, pass_at_k.png and accuracy_vs_tokens.png for ``sweep``; return report.md's path."""
    sweep = Path(sweep)
    out = Path(out) if out else sweep
    out.mkdir(parents=True, exist_ok=True)
    runs = with_decodings([read_run(d, sweep) for d in find_runs(sweep)])
    if not runs:
        raise FileNotFoundError(f"{sweep}: no run directories (none holds .hydra/ or metrics.json)")
    keys = varying_keys(runs)
    names = short_names(keys)
    common = most_common(runs, keys)
    labels = {r["name"]: label(r, keys, names, common) for r in runs}
    failed = [r for r in runs if r["metrics"] is None]
    base = [r for r in runs if not r.get("extra")]

    plot_pass_at_k(runs, labels, out / "pass_at_k.png")
    plot_accuracy_vs_tokens(runs, labels, out / "accuracy_vs_tokens.png")
    lines = [
        f"# Sweep report: {sweep}",
        "",
        f"{len(base)} runs, {len(base) - len(failed)} finished, {len(failed)} failed"
        + (f"; {len(runs) - len(base)} more rows evaluate a run's checkpoint with another decoding "
           "(`RUN/mode`, eval.extra_decodings). " if len(runs) > len(base) else ". ") +
        "Columns before `status` are the config keys whose values differ between runs "
        f"({', '.join(f'`{k}`' for k in keys) or 'none'}); the rest come from each run's `metrics.json`: "
        "greedy `accuracy` with its Wilson 95% interval over the problems, unbiased `pass@k` over the sampled completions, mean completion tokens "
        "(greedy; `_sampled`: of the samples), `backspace_use` (share of greedy completions that erase), "
        "and the malformed, no-answer and loop rates of the greedy completions.",
        "",
        table(runs, keys, names),
        "",
    ]
    seeds = seed_table(runs, keys, names)
    if seeds:
        lines += ["## Over seeds", "",
                  "Runs that differ only in `seed`, taken together (greedy accuracy's mean and range, "
                  "pass@k's mean).", "", seeds, ""]
    lines += [
        "## At equal test-time compute",
        "",
        "The best each row does within a budget of generated tokens per problem (its mean; "
        "self_backtrack counts every token its search sampled): greedy accuracy where the greedy "
        "answer fits, pass@k for the largest k whose samples fit; no interpolation. pass@k is an "
        "oracle (one right sample of k counts); greedy and self_backtrack's selected answer are not.",
        "",
        budget_table(runs, labels),
        "",
        "![pass@k against k](pass_at_k.png)",
        "",
        "Accuracy at equal test-time compute: each point of a run is pass@k placed at k times its "
        "mean sampled completion length (self_backtrack: all tokens its search sampled), so a run whose answers are twice as long is read against "
        "a shorter-writing run's pass@2 at the same x; the hollow marker is greedy accuracy.",
        "",
        "![accuracy against generated tokens per problem](accuracy_vs_tokens.png)",
        "",
    ]
    if failed:
        lines += ["## Failed runs", ""]
        for r in failed:
            lines.append(f"- `{r['dir']}`: no metrics.json (failed, or still running); overrides: `{' '.join(r['overrides']) or '(none)'}`")
        lines.append("")
    lines += ["## Overrides of each run", ""]
    lines += [f"- {r['name']}: `{' '.join(r['overrides']) or '(none)'}`" for r in base]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a multirun sweep directory (multirun/train/<time>)")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md and the plots "
                        "(default: the sweep directory)")
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        print(f"error: {args.sweep}: no such directory", file=sys.stderr)
        sys.exit(2)
    try:
        path = report(args.sweep, args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(path)


if __name__ == "__main__":
    main()
