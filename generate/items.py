"""The item source: item ``idx`` of a split, drawn (or read from a problems or traces file),
solved, rendered, paraphrased and validated into one chunk line. Item ``idx`` is a pure
function of the settings and ``idx``: its randomness is seeded from
``"{task}/{split}/{seed}/{idx}"``, so any process can make it, in any order."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

from generate import interop, paraphrase, validate
from generate.files import utf8_lines
from generate.settings import Settings
from generate.splits import HELDOUT_SPLIT, item_rng, split_of
from solvers import variants
from solvers.config import ConfigError
from solvers.trace import BACKSPACE, Step, render, stats

MAX_DRAWS = 10_000  # puzzles drawn for one item before it is given up as "no_puzzle"


def read_problems(path: Path, task, lines: Optional[list[int]] = None) -> list[dict]:
    """Every puzzle of a problems file (one JSON object per line in UTF-8; blank lines
    skipped), checked before anything is written. A bad line is an error naming its number.
    ``lines``, when given, gets each puzzle's line number."""
    puzzles = []
    for lineno, line in utf8_lines(path, "problems"):
        if not line.strip():
            continue
        try:
            puzzles.append(task.parse_puzzle(json.loads(line)))
            if lines is not None:
                lines.append(lineno)
        except json.JSONDecodeError as e:
            raise ConfigError("problems", f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        except ValueError as e:
            raise ConfigError("problems", f"{path}:{lineno}: {e}") from None
    if not puzzles:
        raise ConfigError("problems", f"{path}: holds no puzzles")
    return puzzles


class Items:
    """Makes item ``idx`` of a split: everything a worker process needs."""

    def __init__(self, settings: Settings, problems: Optional[list[dict]] = None,
                 traces: Optional[list[tuple]] = None, contamination=None) -> None:
        self.settings = settings
        self.task = settings.module
        self.problems = problems
        self.traces = traces  # (puzzle, events or None) per imported line
        self.contamination = contamination

    def content_split(self, puzzle: dict) -> str:
        if self.task.is_heldout(puzzle, self.settings.task_config):
            return HELDOUT_SPLIT
        return split_of(self.task.puzzle_key(puzzle), self.settings.split_weights)

    def config_for(self, split: str, idx: int):
        """The task config item ``idx`` is solved with: with ``mix``, a heuristic drawn for it
        from its own stream (so that mix=false items are what they always were)."""
        settings = self.settings
        if not settings.mix:
            return settings.task_config
        heuristic = item_rng(settings.task, split, settings.seed, idx, "/mix").choice(self.task.HEURISTICS)
        return dataclasses.replace(settings.task_config, heuristic=heuristic)

    def draw(self, split: str, idx: int) -> tuple[Optional[dict], Optional[list], str]:
        """(puzzle, events, reason): a puzzle of this split the solver solved."""
        settings, task = self.settings, self.task
        rng = item_rng(settings.task, split, settings.seed, idx)
        config = self.config_for(split, idx)
        if self.traces is not None:  # imported: the search is given, not made
            puzzle, events, *why = self.traces[idx]  # why: the reader's reason when it has no events
            return puzzle, events, why[0] if why else "unconvertible"
        if self.problems is not None:
            puzzle = self.problems[idx]
            if task.PROPOSES:
                return self.proposed(puzzle, config, rng)
            if task.solve_given is not None:  # countdown: (events, reason), e.g. no_solution
                return (puzzle, *task.solve_given(puzzle, config, rng))
            return puzzle, task.solve(puzzle, config, rng), "unsolved"
        for _ in range(MAX_DRAWS):
            puzzle = task.sample(settings.task_config, rng)
            if self.content_split(puzzle) != split:
                continue
            events = task.solve(puzzle, config, rng)
            if events is not None:
                return puzzle, events, ""
        return None, None, "no_puzzle"

    def proposed(self, puzzle: dict, config, rng) -> tuple[dict, Optional[list], str]:
        """Solve with an LLM proposing the steps (llm_search). The Proposer is built lazily,
        once per process: a forked worker opens its own cache connection and HTTP client, and
        saves its usage to its own file under OUT/.work/proposer for the manifest."""
        from generate.llm import ProposeFailed, Proposer
        if getattr(self, "_proposer_pid", None) != os.getpid():
            usage = self.settings.out / ".work" / "proposer" / f"usage-{os.getpid()}-{os.urandom(4).hex()}.json"
            self._proposer, self._proposer_pid = Proposer(self.settings.proposer, usage), os.getpid()
        try:
            return puzzle, self.task.solve(puzzle, config, rng, propose=self._proposer), "unsolved"
        except ProposeFailed as e:
            print(e)
            return puzzle, None, "propose_failed"

    def prepare(self, split: str, idx: int) -> tuple[Optional[dict], Optional[list], str]:
        """(puzzle, events as they will be written, reason when there are none)."""
        settings = self.settings
        puzzle, events, reason = self.draw(split, idx)
        if events is None:
            return puzzle, None, reason
        if settings.think:
            rng = item_rng(settings.task, split, settings.seed, idx, "/think")
            events = variants.think(events, settings.think, rng)
        return puzzle, events, ""

    def plain_steps(self, events: list) -> list[str]:
        """The steps' plain wording: what an LLM paraphraser is asked to rewrite."""
        w = paraphrase.words(self.task, events, "none", None, style=self.settings.style, notes=self.settings.notes)
        return [t for t, e in zip(w, events) if isinstance(e, Step)]

    def __call__(self, split: str, idx: int) -> str:
        return self.finish(split, idx, *self.prepare(split, idx))

    def finish(self, split: str, idx: int, puzzle: Optional[dict], events: Optional[list], reason: str,
               steps: Optional[list[str]] = None) -> str:
        """One chunk line: ``meta<TAB>record``, both JSON (a rejection has no record).
        ``steps``: the steps' words from an LLM paraphraser, when there is one."""
        settings, task = self.settings, self.task
        if events is None or reason:
            return json.dumps({"reject": reason}) + "\t"
        rng = item_rng(settings.task, split, settings.seed, idx, "/words")
        words = paraphrase.words(task, events, settings.paraphraser, rng,
                                 style=settings.style, notes=settings.notes, slips=settings.slips, steps=steps)
        text = render(events, words, settings.style, notes=settings.notes)
        record = {
            "Question": task.question(puzzle),
            "Answer": events[-1].value,
            "Reasoning": text,
            "id": f"{settings.task}/{split}/{settings.seed}/{idx}",
            "task": settings.task,
            "split": split,
            "style": settings.style,
            "source": "synthetic" if self.traces is None else "imported",
            "puzzle": puzzle,
            # slips are written in the backspace style only; the others write the corrected step
            "stats": {**stats(events, text),
                      "slips": sum(BACKSPACE in w for w in words) if settings.style == "backspace" else 0,
                      **(task.record_stats(events) if task.record_stats is not None else {})},
        }
        heuristic = self.config_for(split, idx).heuristic
        if settings.mix:
            record["heuristic"] = heuristic
        leak_check = None if self.problems is not None or self.traces is not None else self.content_split
        reason = validate.check(record, task, settings.max_chars, leak_check)
        if reason is None and self.contamination is not None and self.contamination.hit(puzzle, record["Question"]):
            reason = "contaminated"
        meta = {"reject": reason, "key": task.puzzle_key(puzzle), "stats": record["stats"]}
        if settings.layout != "seed":
            record = interop.export(settings.layout, record, events, self.config_for(split, idx))
        return json.dumps(meta) + "\t" + json.dumps(record, ensure_ascii=False)

