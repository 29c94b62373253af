"""Self-improvement: sample on train problems, keep the verified-correct completions, retrain.

One iteration (``improve.iterations`` of them, after GRPO or SFT, before eval):

1. draw ``improve.n_problems`` distinct train puzzles (a fresh seeded draw each iteration);
2. sample ``improve.num_samples`` completions each (``improve.decoding``: visible | erase);
3. judge each with the task's verifier (``train.rewards.judge``: backspaces applied, last
   ``Answer:`` line verified) and keep the correct ones, one per distinct collapsed text of a
   puzzle, as SFT records whose ``Reasoning`` is the raw completion, backspaces included;
4. continue SFT from the current model on them (plus the original train records with
   ``improve.mix_original``), with ``improve.sft`` overriding the ``sft`` group.

``RUN/improve/iter-<i>/`` holds ``records.jsonl`` (the kept records), ``stats.json`` and the
retrained checkpoint with its tokenizer. An iteration that keeps nothing (a weak model)
retrains nothing and says so; the next one samples from the same model.

Never the test split: only records whose ``split`` is ``train`` are candidates, any whose
puzzle key is also in another split of the dataset (val, test, ...) is left out, and the
prompts are checked once more just before generation.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

from solvers import TASKS
from solvers.config import check_choice, check_int_range
from solvers.trace import ANSWER_PREFIX, BACKSPACE
from train.data import prompt_of, read_split
from train.rewards import judge

DECODINGS = ("visible", "erase")
KEEPS = ("correct",)


def check(c: dict) -> None:
    """Refuse a bad ``improve`` group before any training, naming the key."""
    imp = c["improve"]
    check_int_range("improve.iterations", imp["iterations"], 1)
    check_int_range("improve.n_problems", imp["n_problems"], 1)
    check_int_range("improve.num_samples", imp["num_samples"], 1)
    check_int_range("improve.max_new_tokens", imp["max_new_tokens"], 1)
    check_int_range("improve.batch_size", imp["batch_size"], 1)
    check_choice("improve.decoding", imp["decoding"], DECODINGS)
    check_choice("improve.keep", imp["keep"], KEEPS)


def retrain_config(c: dict) -> dict:
    """The run config with ``improve.sft`` merged into ``sft``: what each retraining uses."""
    c2 = copy.deepcopy(c)
    c2["sft"].update(c["improve"].get("sft") or {})
    return c2


def puzzle_key(record: dict) -> str:
    """A record's puzzle as its task compares puzzles (human traces: the puzzle's JSON)."""
    task = TASKS.get(record["task"])
    if task is not None:
        return task.puzzle_key(record["puzzle"])
    return json.dumps(record["puzzle"], sort_keys=True)


def heldout_keys(data_dir: Path) -> set[str]:
    """Puzzle keys of every split of the dataset but train."""
    splits = sorted({p.parent.name for p in Path(data_dir).glob("*/shard-*.jsonl")} - {"train"})
    return {puzzle_key(r) for s in splits for r in read_split(Path(data_dir), s)}


def problems(records: list[dict], heldout: set[str], n: int, seed: int, iteration: int) -> list[dict]:
    """``n`` train records with distinct puzzles, none of them held out: the iteration's draw.
    Seeded by a string, so that iteration 2 of seed 0 is not iteration 1 of seed 1.

    >>> r = [{"task": "countdown", "split": s, "puzzle": {"numbers": [1, 2, n], "target": 10}}
    ...      for s, n in (("train", 3), ("train", 4), ("test", 5), ("train", 6))]
    >>> [p["puzzle"]["numbers"][2] for p in problems(r, {"1,2,6=10"}, 5, 0, 1)]  # no test record, no held-out key
    [3, 4]
    """
    pool, seen = [], set()
    for r in records:
        key = puzzle_key(r)
        if r.get("split") != "train" or key in heldout or key in seen:
            continue
        seen.add(key)
        pool.append(r)
    random.Random(f"improve/{seed}/{iteration}").shuffle(pool)
    return pool[:n]


def keep_correct(records: list[dict], completions: list[list[str]], iteration: int) -> tuple[list[dict], dict]:
    """The verified-correct completions as SFT records, one per distinct collapsed text of a
    puzzle, and the counts for ``stats.json``.

    >>> rec = {"id": "countdown/train/0/0", "task": "countdown", "split": "train", "style": "backspace",
    ...        "Question": "Q", "Answer": "3 * 5 + 7", "puzzle": {"numbers": [3, 5, 7], "target": 22}}
    >>> right = "3 * 5 = 15\\n15 + 7 = 22\\nAnswer: 7 + 3 * 5"
    >>> kept, stats = keep_correct([rec], [[right, right, "Answer: 3 + 5 + 7", "x\\b" + right]], 1)
    >>> [k["Answer"] for k in kept], stats["correct"], stats["kept"], kept[0]["source"]
    (['7 + 3 * 5'], 3, 1, 'self_improve/1')
    """
    kept, correct, solved = [], 0, 0
    for record, outputs in zip(records, completions):
        seen: set[str] = set()
        hits = 0
        for j, text in enumerate(outputs):
            v = judge(text, record["puzzle"], record["task"])
            if not v["correct"] or not v["collapsed"].rstrip("\n").rsplit("\n", 1)[-1].startswith(ANSWER_PREFIX):
                continue  # a record's collapsed Reasoning must end with its Answer line
            hits += 1
            if v["collapsed"] in seen:
                continue
            seen.add(v["collapsed"])
            answer = v["answer"]
            if isinstance(record["Answer"], int) and not isinstance(record["Answer"], bool):
                try:
                    answer = int(answer)
                except ValueError:
                    pass
            kept.append({"Question": record["Question"], "Answer": answer, "Reasoning": text,
                         "id": f"self_improve/{iteration}/{record['id']}/{j}", "task": record["task"],
                         "split": "train", "style": record.get("style"), "source": f"self_improve/{iteration}",
                         "puzzle": record["puzzle"], "parent": record["id"],
                         "stats": {"backspaces": text.count(BACKSPACE), "characters": len(text)}})
        correct += hits
        solved += hits > 0
    sampled = sum(len(o) for o in completions)
    stats = {"iteration": iteration, "problems": len(records), "sampled": sampled, "correct": correct,
             "kept": len(kept), "train_accuracy": correct / sampled if sampled else 0.0,
             "problems_solved": solved}
    return kept, stats


def sample(model, tokenizer, records: list[dict], imp: dict, heldout: set[str], generate=None) -> list[list[str]]:
    """``imp["num_samples"]`` raw completions per record. ``generate`` has the signature of
    ``train.decode.generate`` (tests pass a scripted one)."""
    for r in records:  # the last gate before any prompt reaches the model
        if r.get("split") != "train" or puzzle_key(r) in heldout:
            raise RuntimeError(f"self-improvement must sample train puzzles only; got {r.get('id')} "
                               f"(split {r.get('split')!r})")
    if generate is None:
        from train.decode import generate
    side = getattr(tokenizer, "padding_side", None)
    out = generate(model, tokenizer, [prompt_of(r["Question"]) for r in records],
                   num_return_sequences=imp["num_samples"], do_sample=True, temperature=imp["temperature"],
                   max_new_tokens=imp["max_new_tokens"], batch_size=imp["batch_size"], decoding=imp["decoding"])
    if side is not None:
        tokenizer.padding_side = side  # generation pads left; leave the tokenizer as it was
    return [[text for text, *_ in outputs] for outputs in out]


def run(model, tokenizer, train_records: list[dict], data_dir: Path, c: dict, run_dir: Path,
        peft_config=None, generate=None, retrain=None) -> tuple[object, list[dict]]:
    """All iterations; returns the model and one metrics entry per iteration. ``peft_config``:
    adapters for the first retraining, when no earlier stage put them on the model."""
    from train import sft
    from train.model import place
    from train.trl_configs import sft_config

    imp = c["improve"]
    if generate is None:  # sampling runs on hardware's device (a retraining leaves the model there too)
        model = place(model, c)
    heldout = heldout_keys(data_dir)
    c2 = retrain_config(c)
    entries = []
    for i in range(1, imp["iterations"] + 1):
        out_dir = run_dir / "improve" / f"iter-{i}"
        out_dir.mkdir(parents=True, exist_ok=True)
        chosen = problems(train_records, heldout, imp["n_problems"], c["seed"], i)
        completions = sample(model, tokenizer, chosen, imp, heldout, generate)
        kept, stats = keep_correct(chosen, completions, i)
        with open(out_dir / "records.jsonl", "w", encoding="utf-8") as f:
            for r in kept:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"improve {i}/{imp['iterations']}: {stats['problems']} train problems, {stats['sampled']} completions, "
              f"{stats['correct']} correct ({stats['train_accuracy']:.1%}), {stats['kept']} kept")
        if kept:
            records = kept + (train_records if imp["mix_original"] else [])
            train_fn = retrain or sft.train
            model, m = train_fn(model, tokenizer, records, c2, sft_config(c2, out_dir), out_dir, peft_config)
            peft_config = None  # adapters, if any, are on the model now
            stats.update({"retrained": True, "retrain_records": len(records),
                          **{k.replace("sft_", "retrain_"): v for k, v in m.items()}})
        else:
            print(f"improve {i}: no completion was correct; retraining skipped, the model is unchanged")
            stats.update(retrained=False, retrain_records=0)
        (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
        entries.append(stats)
    return model, entries
