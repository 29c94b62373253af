"""The trace model: render styles, collapse, and the invariant the project rests on."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.trace import (BACKSPACE, BACKTRACK_TOKEN, Answer, Backtrack, MalformedTrace, Recorder,
                           Step, check_events, collapse, erased_mask, render, stats)


@st.composite
def traces(draw):
    """Arbitrary well-formed searches with arbitrary one-line words per event."""
    line = st.text(st.characters(blacklist_characters="\n\b<", blacklist_categories=("Cs",)), max_size=12)
    events, words, live = [], [], 0
    for _ in range(draw(st.integers(0, 25))):
        if live and draw(st.booleans()):
            k = draw(st.integers(1, live))
            events.append(Backtrack(k))
            words.append(draw(line) + "\n")
            live -= k
        else:
            events.append(Step({}))
            words.append(draw(line) + "\n")
            live += 1
    events.append(Answer("x"))
    words.append("Answer: " + draw(line))
    return events, words


@settings(max_examples=300, deadline=None)
@given(traces())
def test_erasing_styles_collapse_to_direct(trace):
    events, words = trace
    check_events(events)
    direct = render(events, words, "direct")
    for style in ("backspace", "backtrack_token"):
        assert collapse(render(events, words, style)) == direct


@settings(max_examples=200, deadline=None)
@given(traces())
def test_mask_marks_exactly_the_erased_characters(trace):
    events, words = trace
    text = render(events, words, "backspace")
    mask = erased_mask(text)
    kept = "".join(ch for ch, gone in zip(text, mask) if not gone and ch != BACKSPACE)
    assert kept == collapse(text)
    assert sum(mask) == text.count(BACKSPACE)  # every backspace erases one marked character


def test_backspace_count_is_the_length_of_what_was_abandoned():
    events = [Step({}), Step({}), Backtrack(2), Step({}), Answer(1)]
    words = ["ab\n", "cde\n", "back\n", "f\n", "Answer: 1"]
    text = render(events, words, "backspace")
    assert text == "ab\ncde\n" + BACKSPACE * 7 + "f\nAnswer: 1"
    assert stats(events, text) == {"steps": 3, "abandoned_steps": 2, "backspaces": 7, "characters": len(text)}
    assert render(events, words, "backtrack_token") == "ab\ncde\n" + BACKTRACK_TOKEN * 2 + "f\nAnswer: 1"
    assert render(events, words, "search") == "ab\ncde\nback\nf\nAnswer: 1"


@pytest.mark.parametrize("text, why", [
    ("\b", "backspace before any text"),
    ("ab\b\b\b", "three erasures for two characters"),
    ("<backtrack>", "a marker with no step before it"),
    ("half a step<backtrack>", "a marker in the middle of a line, not after a step"),
])
def test_collapse_rejects_malformed_streams(text, why):
    with pytest.raises(MalformedTrace):
        collapse(text)
    with pytest.raises(MalformedTrace):
        erased_mask(text)


@pytest.mark.parametrize("events, why", [
    ([Step({}), Backtrack(2), Answer(1)], "abandons more steps than are live"),
    ([Step({})], "no answer"),
    ([Answer(1), Step({})], "answer before the end"),
    ([Backtrack(0), Answer(1)], "backtrack of zero steps"),
])
def test_check_events_rejects_impossible_searches(events, why):
    with pytest.raises(ValueError):
        check_events(events)


def test_render_rejects_unknown_style_and_misaligned_words():
    events = [Step({}), Answer(1)]
    with pytest.raises(ValueError, match="style must be one of"):
        render(events, ["a\n", "Answer: 1"], "reverse")
    with pytest.raises(ValueError, match="1 words for 2 events"):
        render(events, ["a\n"], "direct")


def test_recorder_merges_consecutive_backtracks_and_counts_steps():
    r = Recorder()
    r.step({"i": 0}); r.step({"i": 1}); r.step({"i": 2})
    r.backtrack({"to": 2}); r.backtrack({"to": 1})
    r.step({"i": 3}); r.answer(7)
    assert r.events == [Step({"i": 0}), Step({"i": 1}), Step({"i": 2}), Backtrack(2, {"to": 1}),
                        Step({"i": 3}), Answer(7)]
    assert r.steps == 4
