"""What a finished dataset says about itself: manifest.json and the README.md card."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from solvers.trace import BACKSPACE


def manifest_dict(s, report: dict, sizes: dict) -> dict:
    from generate.pipeline import package_version
    totals: dict[str, int] = {}
    for split in report.values():
        for reason, k in split["rejections"].items():
            totals[reason] = totals.get(reason, 0) + k
    config = {
        "task": {"name": s.task, **dataclasses.asdict(s.task_config)},
        "style": s.style, "paraphraser": s.paraphraser, "seed": s.seed,
        "sizes": sizes, "problems": str(s.problems) if s.problems else None,
        "max_chars": s.max_chars, "split_weights": s.split_weights,
        "shard_size": s.shard_size, "workers": s.workers, "num_shards": s.num_shards,
        "variants": s.variants(), "layout": s.layout,
        "traces": {"file": str(s.traces), "layout": s.traces_layout, "on_bad_trace": s.on_bad_trace}
        if s.traces else None,
        "decontaminate": {"file": str(s.decontaminate), "ngram": s.decontaminate_ngram}
        if s.decontaminate else None,
    }
    return {
        "dataset": s.out.name,
        "package": "backspace",
        "version": package_version(),
        "config": config,
        "counts": {split: r["records"] for split, r in report.items()},
        "rejections": dict(sorted(totals.items())),
        "splits": report,
        "fingerprint": s.fingerprint(),
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
