"""The validator: one test per rejection reason, each on a record that is otherwise good."""

import copy

import pytest

from generate import validate
from generate.pipeline import Items, settings
from solvers import TASKS
from solvers import countdown as cd
from solvers.trace import BACKSPACE


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from tests.conftest import generate_cfg
    s = settings(generate_cfg(tmp_path_factory.mktemp("v")))
    items = Items(s)
    import json
    for idx in range(100):  # the first record that has abandoned steps
        meta, record = items("train", idx).split("\t")
        record = json.loads(record)
        if record["stats"]["abandoned_steps"]:
            return record, items.content_split


def rejected(record, split_of=None):
    return validate.check(record, cd, 2048, split_of)


def test_a_good_record_passes(good):
    record, split_of = good
    assert rejected(record, split_of) is None


def mutate(record, **changes):
    r = copy.deepcopy(record)
    r.update(changes)
    return r


def test_schema(good):
    record, _ = good
    assert rejected(mutate(record, Reasoning=None)) == "schema"        # wrong type
    r = mutate(record); del r["Question"]
    assert rejected(r) == "schema"                                      # missing field
    assert rejected(mutate(record, Answer=True)) == "schema"            # a bool is not an answer


def test_malformed_backspaces(good):
    record, _ = good
    assert rejected(mutate(record, Reasoning=BACKSPACE + record["Reasoning"])) == "malformed_backspaces"


def test_missing_answer_line(good):
    record, _ = good
    assert rejected(mutate(record, Reasoning=record["Reasoning"] + "\nHmm.")) == "missing_answer_line"


def test_answer_mismatch(good):
    record, _ = good
    # the answer line and the Answer field disagree, though both could be right answers
    assert rejected(mutate(record, Answer=record["Answer"] + " + 0")) == "answer_mismatch"


def test_wrong_answer(good):
    record, _ = good
    wrong = "1 + 1"
    text = record["Reasoning"].rsplit("Answer: ", 1)[0] + "Answer: " + wrong
    assert rejected(mutate(record, Reasoning=text, Answer=wrong)) == "wrong_answer"


def test_false_equation_in_kept_text(good):
    record, _ = good
    text = "2 + 2 = 5. Left: 5.\n" + record["Reasoning"]
    assert rejected(mutate(record, Reasoning=text)) == "false_equation"


def test_false_equation_that_was_erased_is_not_held_against_the_record(good):
    record, _ = good
    slip = "2 + 2 = 5\n"
    text = slip + BACKSPACE * len(slip) + record["Reasoning"]
    assert rejected(mutate(record, Reasoning=text)) is None


def test_over_length(good):
    record, _ = good
    padding = "x" * 2048
    text = padding + BACKSPACE * len(padding) + record["Reasoning"]
    assert rejected(mutate(record, Reasoning=text)) == "over_length"


def test_split_leak(good):
    record, split_of = good
    assert rejected(mutate(record, split="test"), split_of) == "split_leak"


def test_every_reason_is_documented():
    for reason in validate.BASE_REASONS:
        assert f"\n{reason} " in validate.__doc__
    for task in TASKS.values():  # a task's own reasons: in the docstring of the check that returns them
        for reason in task.REASONS:
            assert reason in validate.REASONS and reason in task.check_page.__doc__, (task.NAME, reason)
