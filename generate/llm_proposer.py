"""The ``llm_search`` proposer (``proposer=openai|anthropic``), which ``task=llm_search`` calls
once per search node: a JSON ask ``{"question", "steps", "k"}``, structured output
``{"candidates": [{"text"}]}`` (a json_schema named "propose" on OpenAI, a forced tool
"propose" on Anthropic). It is synchronous: it runs inside a solver, one process per worker,
and its usage goes to a file per process under ``OUT/.work`` for the manifest. It shares the
paraphraser's providers, cache and usage counting (``generate.llm_providers``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from generate.llm_providers import Cache, LLMConfig, Usage, provider
from solvers.config import ConfigError

# The llm_search proposer's ask. Its steps must survive the checker (solvers/arith.py) and the
# record validator, which reads "a op b = c" with one operation per equation.
PROPOSE_VERSION = "propose-v1"
PROPOSE_PROMPT = """You propose the next step of a worked solution to a question whose answer is an integer.
You get the question, the steps written so far and k. Give k different candidate next steps, the most promising first.
Rules for every candidate:
- One short step on one line, continuing from the steps so far; do not repeat a step already written.
- Write arithmetic one operation per equation, with its result: "7 * 3 = 21", then "12 + 21 = 33"
  (never "12 + 7 * 3 = 33").
- Use integers; write a negative right operand in parentheses: "5 - (-3) = 8".
- When the steps so far already give the final result, propose "Answer: N" with N the integer answer."""

PROPOSE_SCHEMA = {
    "type": "object",
    "properties": {"candidates": {"type": "array", "items": {
        "type": "object", "properties": {"text": {"type": "string"}},
        "required": ["text"], "additionalProperties": False}}},
    "required": ["candidates"], "additionalProperties": False,
}


@dataclass
class ProposerConfig(LLMConfig):
    """The same keys as a paraphraser's (conf/proposer/*.yaml); errors name ``proposer.*``."""
    KEY = "proposer"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch:
            raise ConfigError("proposer.batch", "the proposer asks one node at a time, live; set it to false")

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "prompt_version": PROPOSE_VERSION, "retry_on_reject": None}


def proposer_config(cfg: dict) -> ProposerConfig:
    from solvers.config import build
    return build(ProposerConfig, cfg, "proposer")


class ProposeFailed(RuntimeError):
    """A proposal request failed after the SDK's retries: the puzzle is given up
    (``propose_failed``), not searched with a node silently dead."""


def propose_message(question: str, steps: list[str], k: int) -> str:
    return json.dumps({"question": question, "steps": list(steps), "k": k}, ensure_ascii=False)


def candidates_of(answer: Any) -> list[str]:
    """The candidate texts of a structured answer; [] when it is malformed (a dead node).

    >>> candidates_of({"candidates": [{"text": "7 * 3 = 21"}, {"oops": 1}]}), candidates_of("{not json")
    (['7 * 3 = 21'], [])
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("candidates"), list):
        return []
    return [c["text"] for c in answer["candidates"] if isinstance(c, dict) and isinstance(c.get("text"), str)]


class Proposer:
    """``propose(question, steps, k) -> list[str]`` for ``solvers.llm_search``: one request
    per search node, synchronous, cached like the paraphraser's (provider, server and the full
    request: a re-run makes the same search and pays nothing). ``usage_file``: where this
    process's running usage is saved after every ask, for the manifest."""

    def __init__(self, config: LLMConfig, usage_file: Optional[Path] = None) -> None:
        self.config = config
        self.provider = provider(config, system=PROPOSE_PROMPT, schema=PROPOSE_SCHEMA, tool="propose")
        self.cache = Cache(config.cache_dir)
        self.usage = Usage()
        self.usage_file = usage_file
        self._client = None

    def __call__(self, question: str, steps: list[str], k: int) -> list[str]:
        body = self.provider.body([{"role": "user", "content": propose_message(question, steps, k)}])
        key = self.provider.key(body)
        answer = self.cache.get(key)
        if answer is not None:
            self.usage.cached += 1
        else:
            if self._client is None:
                self._client = self.provider.sync_client()
            self.usage.requests += 1
            try:
                answer = self.provider.send_sync(self._client, body)
            except Exception as e:  # the SDK already retried 429/5xx/timeouts max_retries times
                self.usage.failed += 1
                self._save()
                raise ProposeFailed(f"proposer: request failed after {self.config.max_retries} retries: "
                                    f"{type(e).__name__}: {str(e)[:200]}") from None
            self.usage.count_tokens(self.provider.read(answer)[1])
            self.cache.put(key, answer)
        self._save()
        return candidates_of(self.provider.read(answer)[0])[:k]

    def _save(self) -> None:
        if self.usage_file is not None:
            self.usage_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.usage_file.with_name(self.usage_file.name + ".tmp")
            tmp.write_text(json.dumps(self.usage.as_dict()))
            os.replace(tmp, self.usage_file)
