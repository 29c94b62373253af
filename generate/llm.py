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

Scale and cost:

- requests are async with at most ``concurrency`` in flight; 429 and 5xx are retried by the
  SDKs' own backoff, which honours ``retry-after`` / ``retry-after-ms`` (``max_retries``),
  and every request has a ``timeout``;
- every answer is stored in a SQLite cache (``cache_dir``) keyed by provider, server, model,
  prompt version and the full request, the moment it arrives: a re-run or a resumed run
  never pays twice for the same request;
- ``batch=true`` sends a chunk's uncached requests through the provider's batch API (OpenAI
  Batch, Anthropic Message Batches; about half the price, results within 24 h); the batch id
  is saved under ``OUT/.work`` before polling, so a killed run picks the same batch up again;
- the tokens used and the estimated cost (``price_input_per_mtok``/``price_output_per_mtok``,
  USD per million tokens: set them for your model) go to the manifest.

API keys come from the environment variable named by ``api_key_env`` only; they are never
written to the cache, the manifest or the logs.

The same providers, cache and usage counting serve ``Proposer`` (``proposer=openai|anthropic``),
which ``task=llm_search`` calls once per search node: a JSON ask ``{"question", "steps", "k"}``,
structured output ``{"candidates": [{"text"}]}`` (a json_schema named "propose" on OpenAI, a
forced tool "propose" on Anthropic). It is synchronous: it runs inside a solver, one process
per worker, and its usage goes to a file per process under ``OUT/.work`` for the manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from solvers.config import ConfigError, check_int_range

PROMPT_VERSION = "steps-v1"
PROVIDERS = ("openai", "anthropic")

SYSTEM_PROMPT = """You rewrite the steps of a reasoning trace so they sound like a person thinking aloud.
Rules for every step:
- Keep every number and every equation exactly as written (same numbers, same operators, same results).
- Add no new numbers and no new equations; do not do any arithmetic of your own.
- Keep the step's meaning and its place in the trace; do not merge, split, reorder or drop steps.
- One line per step: no line breaks inside a step.
Answer with the same ids, one rewritten text per id."""

SCHEMA = {
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
        "required": ["id", "text"], "additionalProperties": False}}},
    "required": ["steps"], "additionalProperties": False,
}


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

TOOL_DESCRIPTIONS = {"paraphrase": "The rewritten steps, one per id.",
                     "propose": "Candidate next steps, the most promising first."}


@dataclass
class LLMConfig:
    KEY = "paraphraser"  # the config group, for error messages (not a field)

    name: str
    model: str
    base_url: Optional[str] = None
    api_key_env: str = ""
    temperature: float = 0.7
    max_tokens: int = 2048
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 5
    retry_on_reject: bool = True
    batch: bool = False
    batch_poll_seconds: float = 30.0
    cache_dir: str = "data/generated/llm-cache"
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0

    def __post_init__(self) -> None:
        key = self.KEY
        if not self.model or not isinstance(self.model, str):
            raise ConfigError(f"{key}.model", "must name the model, e.g. gpt-4o-mini")
        check_int_range(f"{key}.concurrency", self.concurrency, 1, 10_000)
        check_int_range(f"{key}.max_retries", self.max_retries, 0, 100)
        check_int_range(f"{key}.max_tokens", self.max_tokens, 1)
        for name in ("temperature", "timeout", "batch_poll_seconds", "price_input_per_mtok", "price_output_per_mtok"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{key}.{name}", f"must be a number >= 0, got {v!r}")

    def fingerprint(self) -> dict:
        """What the words depend on (not how fast or how often they are asked for)."""
        return {"name": self.name, "model": self.model, "base_url": self.base_url, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "prompt_version": PROMPT_VERSION,
                "retry_on_reject": self.retry_on_reject}

    def api_key(self) -> str:
        value = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if not value and self.base_url is None:
            raise ConfigError(f"{self.KEY}.api_key_env",
                              f"set the environment variable {self.api_key_env or '(none named)'} to your API key")
        return value or "not-needed"  # local OpenAI-compatible servers ignore the key


def llm_config(cfg: dict) -> LLMConfig:
    from solvers.config import build
    return build(LLMConfig, cfg, "paraphraser")


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


# ----------------------------------------------------------------------------- cache

class Cache:
    """Answers by request key, in SQLite: one row per answer, committed as it arrives, safe
    for several processes sharing the directory."""

    def __init__(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / "cache.sqlite"
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")

    def get(self, key: str) -> Optional[dict]:
        row = self.db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, answer: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(answer)))

    def close(self) -> None:
        self.db.close()


# ----------------------------------------------------------------------------- providers

def user_message(steps: list[str]) -> str:
    return json.dumps({"steps": [{"id": f"s{i}", "text": t} for i, t in enumerate(steps)]}, ensure_ascii=False)


def retry_message(reasons: list[str], steps: list[str]) -> str:
    """The second ask: what broke the rules, and the steps again (the same JSON shape)."""
    return json.dumps({"problems": reasons,
                       "instruction": "Some rewrites broke the rules. Rewrite all the steps again, keeping "
                                      "every number and equation exactly.",
                       "steps": json.loads(user_message(steps))["steps"]}, ensure_ascii=False)


class Provider:
    """How one provider is asked and how its answer is read. ``body`` is the SDK call's
    keyword arguments, also the batch line and (with the provider and server) the cache key."""

    name = ""

    def __init__(self, config: LLMConfig, system: str = SYSTEM_PROMPT, schema: dict = SCHEMA,
                 tool: str = "paraphrase") -> None:
        self.config = config
        self.system, self.schema, self.tool = system, schema, tool  # what is asked, and the answer's shape

    def key(self, body: dict) -> str:
        blob = json.dumps([self.name, self.config.base_url, PROMPT_VERSION, body], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def body(self, turns: list[dict]) -> dict:
        raise NotImplementedError

    def reply_turn(self, answer: dict) -> dict:
        """The assistant's turn, for a retry that shows the model what it wrote."""
        raise NotImplementedError

    def read(self, response: dict) -> tuple[Any, dict]:
        """(the steps object the model produced, or None when malformed; usage)"""
        raise NotImplementedError


class OpenAIProvider(Provider):
    name = "openai"

    def client(self):
        import openai
        return openai.AsyncOpenAI(api_key=self.config.api_key(), base_url=self.config.base_url,
                                  timeout=self.config.timeout, max_retries=self.config.max_retries)

    def body(self, turns: list[dict]) -> dict:
        return {"model": self.config.model, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens, "messages": [{"role": "system", "content": self.system}] + turns,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": self.tool, "strict": True, "schema": self.schema}}}

    async def send(self, client, body: dict) -> dict:
        return (await client.chat.completions.create(**body)).model_dump(mode="json")

    def send_sync(self, sync_client, body: dict) -> dict:
        return sync_client.chat.completions.create(**body).model_dump(mode="json")

    def reply_turn(self, answer: dict) -> dict:
        return {"role": "assistant", "content": answer["choices"][0]["message"]["content"] or ""}

    def read(self, response: dict) -> tuple[Any, dict]:
        usage = response.get("usage") or {}
        usage = {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)}
        try:
            return json.loads(response["choices"][0]["message"]["content"]), usage
        except (KeyError, IndexError, TypeError, json.JSONDecodeError):
            return None, usage

    # OpenAI Batch: a JSONL file of requests, uploaded; results as a JSONL file.
    def submit_batch(self, sync_client, bodies: dict[str, dict]) -> str:
        lines = "".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": b},
                                   ensure_ascii=False) + "\n" for cid, b in bodies.items())
        f = sync_client.files.create(file=("requests.jsonl", lines.encode()), purpose="batch")
        return sync_client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                          completion_window="24h").id

    def batch_results(self, sync_client, batch_id: str) -> Optional[dict[str, Optional[dict]]]:
        b = sync_client.batches.retrieve(batch_id)
        if b.status in ("failed", "expired", "cancelled"):
            raise RuntimeError(f"OpenAI batch {batch_id} ended as {b.status}")
        if b.status != "completed":
            return None
        out: dict[str, Optional[dict]] = {}
        if b.output_file_id:
            for line in sync_client.files.content(b.output_file_id).text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    resp = row.get("response") or {}
                    out[row["custom_id"]] = resp.get("body") if resp.get("status_code") == 200 else None
        return out

    def sync_client(self):
        import openai
        return openai.OpenAI(api_key=self.config.api_key(), base_url=self.config.base_url,
                             timeout=self.config.timeout, max_retries=self.config.max_retries)


class AnthropicProvider(Provider):
    name = "anthropic"

    def client(self):
        import anthropic
        return anthropic.AsyncAnthropic(api_key=self.config.api_key(), base_url=self.config.base_url,
                                        timeout=self.config.timeout, max_retries=self.config.max_retries)

    def sync_client(self):
        import anthropic
        return anthropic.Anthropic(api_key=self.config.api_key(), base_url=self.config.base_url,
                                   timeout=self.config.timeout, max_retries=self.config.max_retries)

    def body(self, turns: list[dict]) -> dict:
        body = {"model": self.config.model, "max_tokens": self.config.max_tokens,
                "system": self.system, "messages": turns,
                "tools": [{"name": self.tool, "description": TOOL_DESCRIPTIONS[self.tool],
                           "input_schema": self.schema}],
                "tool_choice": {"type": "tool", "name": self.tool}}
        if _accepts_temperature():  # anthropic 2.x's Messages API has no temperature any more
            body["temperature"] = self.config.temperature
        return body

    async def send(self, client, body: dict) -> dict:
        return (await client.messages.create(**body)).model_dump(mode="json")

    def send_sync(self, sync_client, body: dict) -> dict:
        return sync_client.messages.create(**body).model_dump(mode="json")

    def reply_turn(self, answer: dict) -> dict:
        return {"role": "assistant", "content": json.dumps(self._tool_input(answer))}

    def _tool_input(self, response: dict) -> Any:
        for block in response.get("content") or []:
            if block.get("type") == "tool_use" and block.get("name") == self.tool:
                return block.get("input")
        return None

    def read(self, response: dict) -> tuple[Any, dict]:
        usage = response.get("usage") or {}
        usage = {"input_tokens": usage.get("input_tokens", 0), "output_tokens": usage.get("output_tokens", 0)}
        return self._tool_input(response), usage

    def submit_batch(self, sync_client, bodies: dict[str, dict]) -> str:
        return sync_client.messages.batches.create(
            requests=[{"custom_id": cid, "params": b} for cid, b in bodies.items()]).id

    def batch_results(self, sync_client, batch_id: str) -> Optional[dict[str, Optional[dict]]]:
        b = sync_client.messages.batches.retrieve(batch_id)
        if b.processing_status != "ended":
            return None
        out: dict[str, Optional[dict]] = {}
        for row in sync_client.messages.batches.results(batch_id):
            ok = row.result.type == "succeeded"
            out[row.custom_id] = row.result.message.model_dump(mode="json") if ok else None
        return out


def _accepts_temperature() -> bool:
    import inspect

    import anthropic
    return "temperature" in inspect.signature(anthropic.resources.messages.AsyncMessages.create).parameters


def provider(config: LLMConfig, **ask) -> Provider:
    return {"openai": OpenAIProvider, "anthropic": AnthropicProvider}[config.name](config, **ask)


# ----------------------------------------------------------------------------- one trace

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
class Usage:
    requests: int = 0         # sent to the provider (live or in a batch) in this run
    cached: int = 0           # answered from the cache
    failed: int = 0           # requests that failed after the SDK's retries
    fidelity_retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: "Usage") -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def count_tokens(self, used: dict) -> None:
        """Add a provider's usage as ``Provider.read`` gives it."""
        self.input_tokens += used["input_tokens"]
        self.output_tokens += used["output_tokens"]


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



def usage_report(config: LLMConfig, files, prompt_version: str) -> dict:
    """The manifest's account of an LLM's use: the Usage files (one per chunk or process)
    summed, and the estimated cost at the configured prices (half in batch mode)."""
    total = Usage()
    for f in sorted(files):
        total.add(Usage(**json.loads(Path(f).read_text())))
    price = total.input_tokens * config.price_input_per_mtok + total.output_tokens * config.price_output_per_mtok
    return {"provider": config.name, "model": config.model, "base_url": config.base_url, "batch": config.batch,
            "prompt_version": prompt_version, **total.as_dict(),
            "estimated_cost_usd": round(price / 1e6 * (0.5 if config.batch else 1.0), 6),
            "price_per_mtok": {"input": config.price_input_per_mtok, "output": config.price_output_per_mtok}}


# ----------------------------------------------------------------------------- proposer

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
