"""LLM paraphrasers: ``paraphraser=openai`` (also any OpenAI-compatible server through
``paraphraser.base_url``: vLLM, Ollama, llama.cpp's server) and ``paraphraser=anthropic``.

One request per trace. The request carries the trace's steps in their plain wording, each
with an id (``{"steps": [{"id": "s0", "text": "25 - 8 = 17. Left: 3, 17.\\n"}, ...]}``);
the model answers with one rewritten text per id through structured output (a JSON schema
on OpenAI, a forced tool call on Anthropic). Only the words of steps change: the search,
the "back to" lines, the notes and the answer line are the project's own. The pipeline then
renders the trace from the events with the new words, so the backspaces that erase a step
are counted from the text actually written.

Every rewrite is checked (``generate.fidelity``); a trace that fails is sent once more with
the reasons (``retry_on_reject``), then rejected with a named reason if it still fails.

Scale and cost (``concurrency``, retries, the cache, ``batch=true``, the tokens and estimated
cost in the manifest): docs/paraphrasers.md. The providers, their config, the cache and the
usage count are in ``generate.llm_providers``; the ``llm_search`` proposer is in
``generate.llm_proposer``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# Besides what this module uses, the providers' and the proposer's names are imported here so
# that callers and tests keep naming them generate.llm.X.
from generate.llm_proposer import (PROPOSE_PROMPT, PROPOSE_SCHEMA, PROPOSE_VERSION,  # noqa: F401
                                   ProposeFailed, Proposer, ProposerConfig, candidates_of,
                                   propose_message, proposer_config)
from generate.llm_providers import (PROMPT_VERSION, PROVIDERS, SCHEMA, SYSTEM_PROMPT,  # noqa: F401
                                    TOOL_DESCRIPTIONS, AnthropicProvider, Cache, LLMConfig,
                                    OpenAIProvider, Provider, Usage, llm_config, provider, usage_report)

# ----------------------------------------------------------------------------- one trace

def user_message(steps: list[str]) -> str:
    return json.dumps({"steps": [{"id": f"s{i}", "text": t} for i, t in enumerate(steps)]}, ensure_ascii=False)


def retry_message(reasons: list[str], steps: list[str]) -> str:
    """The second ask: what broke the rules, and the steps again (the same JSON shape)."""
    return json.dumps({"problems": reasons,
                       "instruction": "Some rewrites broke the rules. Rewrite all the steps again, keeping "
                                      "every number and equation exactly.",
                       "steps": json.loads(user_message(steps))["steps"]}, ensure_ascii=False)


def steps_of(answer: Any, n: int) -> tuple[Optional[list[str]], Optional[str]]:
    """(the n rewritten texts in id order, None) or (None, reason)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("steps"), list):
        return None, "paraphrase_malformed"
    texts: dict[str, str] = {}
    for item in answer["steps"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("text"), str):
            return None, "paraphrase_malformed"
        texts[item["id"]] = item["text"]
    if sorted(texts) != sorted(f"s{i}" for i in range(n)):
        return None, "paraphrase_structure"
    return [texts[f"s{i}"] for i in range(n)], None


@dataclass
class Job:
    """One trace to paraphrase: its plain step texts; afterwards its rewritten texts or
    the reason it has none."""
    steps: list[str]
    result: Optional[list[str]] = None
    reason: Optional[str] = None
    turns: list[dict] = field(default_factory=list)


class Paraphraser:
    """Rewrites the steps of many traces. ``check(original, rewritten) -> reason | None``
    is the fidelity check a rewrite must pass."""

    def __init__(self, config: LLMConfig, check) -> None:
        self.config = config
        self.provider = provider(config)
        self.check = check
        self.cache = Cache(config.cache_dir)
        self.usage = Usage()
        self._fresh: set[str] = set()  # keys a batch answered in this run: not cache hits

    def _judge(self, job: Job, answer: dict) -> list[str]:
        """Read an answer into the job; the reasons a retry should be told (empty: done)."""
        steps, _ = self.provider.read(answer)
        texts, reason = steps_of(steps, len(job.steps))
        if reason:
            job.result, job.reason = None, reason
            return [f"the answer must be JSON with one entry per id s0..s{len(job.steps) - 1}"]
        problems = []
        for i, (a, b) in enumerate(zip(job.steps, texts)):
            why = self.check(a, b)
            if why:
                problems.append(f"s{i}: {why}: {a.strip()!r} became {b.strip()!r}")
                job.reason = why.split(":")[0]
        if problems:
            job.result = None
        else:
            job.result, job.reason = texts, None
        return problems

    async def _ask(self, client, sem: asyncio.Semaphore, body: dict) -> Optional[dict]:
        key = self.provider.key(body)
        answer = self.cache.get(key)
        if answer is not None:
            self.usage.cached += key not in self._fresh
            return answer
        async with sem:
            self.usage.requests += 1
            try:
                answer = await self.provider.send(client, body)
            except Exception as e:  # the SDK already retried 429/5xx/timeouts max_retries times
                self.usage.failed += 1
                print(f"paraphraser: request failed after {self.config.max_retries} retries: {type(e).__name__}: "
                      f"{str(e)[:200]}")
                return None
        self.usage.count_tokens(self.provider.read(answer)[1])
        self.cache.put(key, answer)
        return answer

    async def _one(self, client, sem, job: Job) -> None:
        job.turns = [{"role": "user", "content": user_message(job.steps)}]
        for attempt in range(2 if self.config.retry_on_reject else 1):
            answer = await self._ask(client, sem, self.provider.body(job.turns))
            if answer is None:
                job.result, job.reason = None, "paraphrase_failed"
                return
            problems = self._judge(job, answer)
            if not problems:
                return
            if attempt == 0 and self.config.retry_on_reject:
                self.usage.fidelity_retries += 1
                job.turns = job.turns + [self.provider.reply_turn(answer),
                                         {"role": "user", "content": retry_message(problems, job.steps)}]

    def run(self, jobs: list[Job], batch_file: Optional[Path] = None) -> None:
        """Paraphrase every job, live or (``batch``) through the batch API."""
        if self.config.batch and batch_file is not None:
            self._batch(jobs, batch_file)

        async def main() -> None:
            client = self.provider.client()
            sem = asyncio.Semaphore(self.config.concurrency)
            try:
                await asyncio.gather(*(self._one(client, sem, j) for j in jobs if j.steps))
            finally:
                await client.close()

        if any(j.steps for j in jobs):
            asyncio.run(main())
        for j in jobs:
            if not j.steps:
                j.result = []

    def _batch(self, jobs: list[Job], batch_file: Path) -> None:
        """Fill the cache through the batch API: first requests, then (retry_on_reject) the
        retries of the answers that failed the check. Each round's batch id is saved before
        polling, so a killed run resumes the same batch."""
        client = self.provider.sync_client()
        saved = json.loads(batch_file.read_text()) if batch_file.exists() else {}
        for rnd in range(2 if self.config.retry_on_reject else 1):
            bodies: dict[str, dict] = {}
            for i, j in enumerate(jobs):
                if not j.steps:
                    continue
                if rnd == 0:
                    j.turns = [{"role": "user", "content": user_message(j.steps)}]
                else:  # a retry round: only for answers that failed the check
                    answer = self.cache.get(self.provider.key(self.provider.body(j.turns)))
                    problems = self._judge(j, answer) if answer is not None else []
                    if not problems:
                        continue
                    j.turns = j.turns + [self.provider.reply_turn(answer),
                                         {"role": "user", "content": retry_message(problems, j.steps)}]
                body = self.provider.body(j.turns)
                if self.cache.get(self.provider.key(body)) is None:
                    bodies[f"r{rnd}-{i}"] = body
            if not bodies:
                continue
            name = f"round{rnd}"
            if name not in saved:
                saved[name] = self.provider.submit_batch(client, bodies)
                batch_file.parent.mkdir(parents=True, exist_ok=True)
                batch_file.write_text(json.dumps(saved))
                print(f"paraphraser: submitted batch {saved[name]} ({len(bodies)} requests); its id is in {batch_file}")
            while (results := self.provider.batch_results(client, saved[name])) is None:
                time.sleep(self.config.batch_poll_seconds)
            self.usage.requests += len(bodies)
            for cid, body in bodies.items():
                answer = results.get(cid)
                if answer is None:
                    self.usage.failed += 1
                    continue
                self.usage.count_tokens(self.provider.read(answer)[1])
                self.cache.put(self.provider.key(body), answer)
                self._fresh.add(self.provider.key(body))
        # the live pass that follows finds these answers in the cache (a failed one is asked live)
