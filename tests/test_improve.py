"""Self-improvement (train/improve.py): train puzzles only, verified-correct completions only,
deduplicated; retraining on them; and one tiny end-to-end run."""

import json

import pytest

from solvers.config import ConfigError
from solvers.trace import BACKSPACE, collapse
from tests.conftest import ROOT
from tests.test_train import compose, run_train

pytest.importorskip("trl")


def record(i: int, split: str, numbers=None) -> dict:
    a, b, c = numbers or (i + 2, i + 3, 5)
    return {"Question": f"Use the numbers {a}, {b}, {c} to make {a + b + c}.", "Answer": f"{a} + {b} + {c}",
            "Reasoning": f"{a} + {b} = {a + b}\n{a + b} + {c} = {a + b + c}\nAnswer: {a} + {b} + {c}",
            "id": f"countdown/{split}/0/{i}", "task": "countdown", "split": split, "style": "backspace",
            "source": "synthetic", "puzzle": {"numbers": [a, b, c], "target": a + b + c}}


def scripted(prompts_seen: list):
    """A generator in train.decode.generate's shape whose completions per prompt are a table:"""
    def generate(model, tokenizer, prompts, *, num_return_sequences, **kwargs):
        prompts_seen.extend(prompts)
        out = []
        for p in prompts:
            nums = [int(x) for x in p.split("numbers ")[1].split(" to")[0].split(", ")]
            a, b, c = nums
            right = f"{a} + {b} = {a + b}\n{a + b} + {c} = {a + b + c}\nAnswer: {a} + {b} + {c}"
            dead = f"{a} * {b} = {a * b}\n"
            table = [
                dead + BACKSPACE * len(dead) + right,     # correct, a dead end erased: kept, raw
                right,                                    # same collapsed text: a duplicate, not kept again
                f"Answer: {a} + {b} + {c}",               # correct, another collapsed text: kept
                f"Answer: {a} * {b} + {c}",               # wrong value: not kept
                BACKSPACE + right,                        # erases nothing: malformed, not kept
                f"Answer: {a} + {b} + {c}\nmore",         # correct answer but not the last line: not kept
                "no answer",                              # no answer: not kept
            ]
            out.append([(t, len(t)) for t in table[:num_return_sequences]])
        return out
    return generate


@pytest.fixture
def dataset(tmp_path):
    """train: 6 records, one of which shares its puzzle with a test record (a leak that must
    never be sampled); test: 2 records."""
    data = tmp_path / "data"
    train = [record(i, "train") for i in range(5)] + [record(5, "train", (11, 13, 17))]
    test = [record(0, "test", (11, 13, 17)), record(1, "test", (19, 20, 21))]
    for split, rows in (("train", train), ("test", test)):
        (data / split).mkdir(parents=True)
        (data / split / "shard-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, train, test


def test_only_train_puzzles_are_sampled_and_only_verified_correct_completions_kept(tmp_path, dataset):
    from train import improve

    data, train, test = dataset
    c = compose("experiment=smoke", "improve.enabled=true", "improve.iterations=2", "improve.n_problems=100",
                "improve.num_samples=7")
    prompts, retrained = [], []

    def retrain(model, tokenizer, records, cfg, args, out_dir, peft_config):
        retrained.append((records, cfg["sft"], out_dir))
        return model, {"sft_steps": 1, "sft_train_loss": 0.5}

    offered = train + [test[1]]  # a test record handed in among the train ones is still never sampled
    model, entries = improve.run("model", None, offered, data, c, tmp_path / "run",
                                 generate=scripted(prompts), retrain=retrain)
    assert model == "model"
    test_questions = {r["Question"] for r in test}
    assert prompts and not test_questions & {p.rstrip("\n") for p in prompts}
    assert len(prompts) == 2 * 5            # 5 train puzzles (the leaked one left out), two iterations
    for i, entry in enumerate(entries, 1):
        out = tmp_path / "run" / "improve" / f"iter-{i}"
        kept = [json.loads(line) for line in open(out / "records.jsonl")]
        stats = json.loads((out / "stats.json").read_text())
        assert stats == entry
        assert entry["problems"] == 5 and entry["sampled"] == 35
        assert entry["correct"] == 3 * 5 and entry["kept"] == 2 * 5 == len(kept)   # 3 correct, 2 distinct
        assert entry["train_accuracy"] == pytest.approx(15 / 35) and entry["retrained"]
        assert entry["retrain_steps"] == 1
        for k in kept:
            assert k["source"] == f"self_improve/{i}" and k["split"] == "train"
            assert k["Question"] not in test_questions
            assert collapse(k["Reasoning"]).endswith(f"Answer: {k['Answer']}")
            assert {"Question", "Reasoning", "Answer", "puzzle", "task", "id"} <= set(k)
        assert any(BACKSPACE in k["Reasoning"] for k in kept)   # the raw stream, backspaces kept
        assert len({(k["parent"], collapse(k["Reasoning"])) for k in kept}) == len(kept)
    records, sft_cfg, out_dir = retrained[0]
    assert len(records) == 10 and out_dir == tmp_path / "run" / "improve" / "iter-1"
    assert sft_cfg["learning_rate"] == c["improve"]["sft"]["learning_rate"]   # improve.sft overrides sft


def test_mix_original_adds_the_train_records_and_nothing_kept_skips_retraining(tmp_path, dataset):
    from train import improve

    data, train, _ = dataset
    c = compose("experiment=smoke", "improve.mix_original=true", "improve.num_samples=2")
    seen = []
    _, entries = improve.run(None, None, train, data, c, tmp_path / "a", generate=scripted([]),
                             retrain=lambda m, t, records, *a: (seen.append(records), (m, {}))[1])
    assert len(seen[0]) == entries[0]["kept"] + len(train)
    c = compose("experiment=smoke", "improve.num_samples=1")   # take only the table's first row ...
    wrong = lambda *a, num_return_sequences, **k: [[("Answer: 1", 9)] for _ in a[2]]  # noqa: E731  ... or none right
    _, entries = improve.run(None, None, train, data, c, tmp_path / "b", generate=wrong,
                             retrain=lambda *a: pytest.fail("retrained on nothing"))
    assert entries[0]["kept"] == 0 and entries[0]["retrained"] is False
    assert (tmp_path / "b" / "improve" / "iter-1" / "records.jsonl").read_text() == ""


def test_the_last_gate_refuses_a_held_out_puzzle():
    from train import improve

    imp = compose()["improve"]
    with pytest.raises(RuntimeError, match="train puzzles only"):
        improve.sample(None, None, [record(0, "test")], imp, set(), generate=scripted([]))
    with pytest.raises(RuntimeError, match="train puzzles only"):
        improve.sample(None, None, [record(0, "train")], imp, {improve.puzzle_key(record(0, "train"))},
                       generate=scripted([]))


@pytest.mark.parametrize("override, key", [
    ("improve.decoding=self_backtrack", "improve.decoding"),
    ("improve.keep=all", "improve.keep"),
    ("improve.iterations=0", "improve.iterations"),
])
def test_bad_improve_config_is_refused(override, key):
    from train import improve

    with pytest.raises(ConfigError, match=key):
        improve.check(compose(override))


def test_retraining_continues_a_tiny_model_and_saves_the_checkpoint(tmp_path, dataset):
    from train import improve
    from train.model import build_model
    from train.tokenizer import build_char_tokenizer, load_tokenizer

    data, train, _ = dataset
    c = compose("experiment=smoke", "improve.num_samples=3", "improve.sft.max_steps=2")
    tok = build_char_tokenizer(r["Question"] + r["Reasoning"] + BACKSPACE + "*" for r in train)
    model = build_model(c, tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model, entries = improve.run(model, tok, train, data, c, tmp_path / "run", generate=scripted([]))
    assert entries[0]["retrained"] and entries[0]["retrain_steps"] == 2
    out = tmp_path / "run" / "improve" / "iter-1"
    assert (out / "config.json").exists() and load_tokenizer(out) is not None
    assert any((v != before[k]).any() for k, v in model.state_dict().items())


def test_smoke_run_with_one_improve_iteration(tmp_path):
    run_dir = tmp_path / "run"
    r = run_train("experiment=smoke", "improve.enabled=true", "improve.iterations=1", "improve.n_problems=8",
                  "improve.num_samples=2", "improve.max_new_tokens=32", "sft.max_steps=2", "grpo.enabled=false",
                  "eval.n_problems=2", f"hydra.run.dir={run_dir}", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    entry, = metrics["improve"]
    assert {"iteration", "sampled", "correct", "kept", "train_accuracy", "retrained"} <= set(entry)
    assert entry["iteration"] == 1 and entry["sampled"] == 16 and "accuracy" in metrics
    out = run_dir / "improve" / "iter-1"
    assert json.loads((out / "stats.json").read_text()) == entry
    kept = [json.loads(line) for line in open(out / "records.jsonl")]
    assert len(kept) == entry["kept"]
    if entry["kept"]:
        assert entry["retrained"] and (out / "config.json").exists()
    else:  # a 2-step model solves nothing: the stage says so and goes on to eval
        assert not entry["retrained"] and "retraining skipped" in r.stdout
    test_questions = {json.loads(line)["Question"] for p in (tmp_path / "cache").glob("*/test/shard-*.jsonl")
                      for line in open(p)}
    assert test_questions and not test_questions & {k["Question"] for k in kept}
    assert (ROOT / "conf" / "improve" / "default.yaml").exists()
