"""decontaminate=FILE: benchmark puzzles and questions kept out, and counted."""

import json

from generate import pipeline
from generate.decontaminate import Contamination
from solvers import countdown as cd


def contamination(tmp_path, lines, ngram=13):
    path = tmp_path / "bench.txt"
    path.write_text("\n".join(lines) + "\n")
    return Contamination.from_file(path, cd, ngram)


Q = cd.question({"numbers": [25, 8, 3, 5], "target": 46})


def test_puzzle_lines_match_the_same_puzzle_in_any_order(tmp_path):
    c = contamination(tmp_path, ['{"numbers": [5, 3, 8, 25], "target": 46}'])
    assert c.summary() == {"puzzles": 1, "questions": 0}
    assert c.hit({"numbers": [25, 8, 3, 5], "target": 46}, "whatever")       # same numbers, other order
    assert not c.hit({"numbers": [25, 8, 3, 5], "target": 47}, Q)             # another target
    assert not c.hit({"numbers": [25, 8, 3, 6], "target": 46}, "whatever")   # another number


def test_question_lines_match_by_long_word_runs(tmp_path):
    # a benchmark that phrases the same problem with other punctuation and case
    c = contamination(tmp_path, [Q.upper().replace(",", " ;")])
    assert c.summary() == {"puzzles": 0, "questions": 1}
    assert c.hit({"numbers": [1], "target": 1}, Q)
    # a question of another puzzle shares the template's words but no 13-word run
    assert not c.hit({"numbers": [1], "target": 1}, cd.question({"numbers": [25, 8, 3, 6], "target": 46}))
    assert not c.hit({"numbers": [1], "target": 1}, cd.question({"numbers": [25, 8, 3, 5], "target": 45}))


def test_short_lines_and_short_questions_match_whole(tmp_path):
    c = contamination(tmp_path, ["What is 7482 / 29?", "A long benchmark problem: a farmer asks, what is 96 / 8 today?"])
    assert c.hit({"numbers": [1], "target": 1}, "Quick: what is 7482 ÷ 29?")   # the short line inside a question
    assert c.hit({"numbers": [1], "target": 1}, "What is 96 ÷ 8?")             # a short question inside a line
    assert not c.hit({"numbers": [1], "target": 1}, "What is 7482 ÷ 28?")


def test_pipeline_rejects_and_counts_contaminated_records(tmp_path, gen_cfg):
    out, _ = pipeline.run(gen_cfg(tmp_path / "clean", n=50, n_val=0, n_test=0))
    records = [json.loads(x) for x in (out / "train" / "shard-00000.jsonl").read_text().splitlines()]
    bench = tmp_path / "bench.txt"
    # five puzzles as JSON (shuffled numbers) and five as question text
    lines = [json.dumps({"numbers": r["puzzle"]["numbers"][::-1], "target": r["puzzle"]["target"]})
             for r in records[:5]] + [r["Question"] for r in records[5:10]]
    bench.write_text("\n".join(lines) + "\n")
    out2, _ = pipeline.run(gen_cfg(tmp_path / "decon", n=50, n_val=0, n_test=0, decontaminate=str(bench)))
    man = json.loads((out2 / "manifest.json").read_text())
    assert man["rejections"].get("contaminated") == 10
    assert man["config"]["decontaminate"] == {"file": str(bench), "ngram": 13, "puzzles": 5, "questions": 5}
    kept = [json.loads(x) for x in (out2 / "train" / "shard-00000.jsonl").read_text().splitlines()]
    assert len(kept) == 50
    banned = {cd.puzzle_key(r["puzzle"]) for r in records[:10]}
    assert not banned & {cd.puzzle_key(r["puzzle"]) for r in kept}
