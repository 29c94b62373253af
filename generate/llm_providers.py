"""The LLM providers that the paraphraser (``generate.llm``) and the ``llm_search`` proposer
(``generate.llm_proposer``) ask: their config, the request and answer of OpenAI (and any
OpenAI-compatible server) and Anthropic, live and in batches, the answer cache and the usage.

429 and 5xx are retried by the SDKs' own backoff, which honours ``retry-after`` /
``retry-after-ms`` (``max_retries``), and every request has a ``timeout``. Every answer is
stored in a SQLite cache (``cache_dir``) keyed by provider, server, model, prompt version and
the full request, the moment it arrives: a re-run or a resumed run never pays twice for the
same request. API keys come from the environment variable named by ``api_key_env`` only; they
are never written to the cache, the manifest or the logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
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

# ----------------------------------------------------------------------------- usage

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
