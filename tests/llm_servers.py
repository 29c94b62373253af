"""Fake OpenAI and Anthropic HTTP servers for testing the LLM paraphraser clients.

Why: the paraphraser talks to the providers through their official SDKs (`openai`, `anthropic`), and
the tests must exercise those SDKs for real -- their retries, timeouts, multipart uploads, JSONL
decoding -- without network access or API keys. So nothing is patched: each fake here is a real
HTTP server on 127.0.0.1 (an ephemeral port, stdlib `ThreadingHTTPServer` in a daemon thread) that
speaks its provider's wire format, and a test points an unmodified SDK client at `server.url`.

What they speak (the contract is in LLM_WIRE.md):

- `FakeOpenAI`: POST /v1/chat/completions (structured output via `response_format` json_schema),
  POST /v1/files (multipart), GET /v1/files/{id}, GET /v1/files/{id}/content,
  POST /v1/batches, GET /v1/batches/{id}.  `url` is "http://127.0.0.1:PORT/v1".
- `FakeAnthropic`: POST /v1/messages (structured output via a forced `paraphrase` tool),
  POST /v1/messages/batches, GET /v1/messages/batches/{id}, GET .../{id}/results (JSONL).
  `url` is "http://127.0.0.1:PORT".

The user message of a model request is a JSON string {"steps": [{"id", "text"}, ...]}; the fake
model answers the same ids with `server.rewrite(text)` (default: "So, " + the text with its first
letter lower-cased, which keeps every number).  Batches are answered when created and report done
after `polls_until_done` retrieves; their state lives in the server object, so a fresh client (as
after a killed process) can pick a batch up by id.

A model request whose user JSON has "question" instead ({"question", "steps", "k"}: the `llm_search`
proposer's ask) is answered with `server.propose(ask) -> list[str]` as {"candidates": [{"text"}]}, in
the json_schema content (OpenAI) or the forced tool's input (Anthropic). The default,
`default_propose`, is `arithmetic_proposer` for questions like "What is 12 + 7 * 3?": it proposes the
left-to-right step (wrong where precedence matters), a step with a false result, the right step,
and "Answer: N" once one number is left. Only the "malformed" content fault applies to proposals.

Faults are scripted with `server.fail_next(kind, times=1, path=None)` and consumed, in order, by the
next requests whose path ends with `path` (default: the model endpoint; batch items count as model
requests too):

- "429"     status 429, headers Retry-After and retry-after-ms (`server.retry_after`), rate_limit_error body
- "500"     status 500, the provider's server-error body
- "timeout" wait `server.delay` seconds, then answer normally (the client has given up by then)
- "malformed", "change_number", "drop_step": status 200 with a bad answer (model requests only)

Every request is recorded in `server.requests`; `server.count(path_suffix)` counts them.  Usage::

    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.url, api_key="test")
        server.fail_next("429")
        client.chat.completions.create(...)
        assert server.count("/chat/completions") == 2

or the pytest fixtures `openai_server` / `anthropic_server` (exported to all tests by conftest.py).
"""
from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

import pytest

TRANSPORT_FAULTS = ("429", "500", "timeout")
CONTENT_FAULTS = ("malformed", "change_number", "drop_step")
FAULTS = TRANSPORT_FAULTS + CONTENT_FAULTS


def default_rewrite(text: str) -> str:
    """Change the words, keep every number, equation and the trailing newline."""
    return "So, " + text[:1].lower() + text[1:]


def tokens(obj) -> int:
    """A deterministic token count: characters of the JSON // 4 + 1."""
    return len(obj if isinstance(obj, str) else json.dumps(obj)) // 4 + 1


def bump_first_number(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 1), text, count=1)


_TOKEN = re.compile(r"-?\d+|[-+*]")


def _eq(a: int, op: str, b: int) -> tuple[str, int]:
    c = a + b if op == "+" else a - b if op == "-" else a * b
    return f"{a} {op} {b if b >= 0 else f'({b})'} = {c}", c


def arithmetic_proposer(question: str, steps: list[str], k: int) -> list[str]:
    """A deterministic stand-in for an LLM proposing next steps of "What is a op b op c?".

    The steps so far are replayed on the expression ("7 * 3 = 21" replaces "7 * 3" by 21);
    then the candidates, at most k, in this order: the left-to-right step (a wrong order
    where a later * binds tighter), the right step with its result one too big (false
    arithmetic), the right step; "Answer: N" once one number is left. Unknown questions or
    steps it cannot replay get no candidates.

    >>> arithmetic_proposer("What is 12 + 7 * 3?", [], 3)
    ['12 + 7 = 19', '7 * 3 = 22', '7 * 3 = 21']
    >>> arithmetic_proposer("What is 12 + 7 * 3?", ["7 * 3 = 21", "12 + 21 = 33"], 3)
    ['Answer: 33']
    """
    m = re.fullmatch(r"What is ([-+*\d ]+)\?", question.strip())
    if not m:
        return []
    tokens = _TOKEN.findall(m[1])
    if len(tokens) % 2 == 0 or any(not t.lstrip("-").isdigit() for t in tokens[::2]):
        return []
    vals = [int(t) for t in tokens[::2]]
    ops = tokens[1::2]
    for step in steps:  # replay: find the pair the step combined
        sm = re.fullmatch(r"(-?\d+) ([-+*]) \(?(-?\d+)\)? = (-?\d+)", step)
        i = next((i for i in range(len(ops)) if sm and (vals[i], ops[i], vals[i + 1]) ==
                  (int(sm[1]), sm[2], int(sm[3]))), None)
        if i is None:
            return []
        vals[i:i + 2] = [_eq(vals[i], ops[i], vals[i + 1])[1]]
        del ops[i]
    if not ops:
        return [f"Answer: {vals[0]}"]
    right = next((i for i, op in enumerate(ops) if op == "*"), 0)
    text, c = _eq(vals[right], ops[right], vals[right + 1])
    out = [_eq(vals[0], ops[0], vals[1])[0], text.rsplit("= ", 1)[0] + f"= {c + 1}", text]
    return list(dict.fromkeys(out))[:k]


def default_propose(ask: dict) -> list[str]:
    """The fake model's proposals for an ask {"question", "steps", "k"}."""
    return arithmetic_proposer(ask["question"], ask.get("steps") or [], int(ask.get("k") or 3))


def text_of(content) -> str:
    """A message's content as one string: the SDKs accept a string or a list of text parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


class BadRequest(Exception):
    """Raised by a route to answer 4xx with the provider's error body."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


class Response:
    def __init__(self, status: int = 200, body=None, headers: dict | None = None,
                 content_type: str = "application/json"):
        self.status, self.body, self.headers, self.content_type = status, body, dict(headers or {}), content_type

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def do_GET(self):
        self.server.fake._handle(self)

    do_POST = do_DELETE = do_GET

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("content-length") or 0))


class FakeLLMServer:
    """The machinery both fakes share: HTTP plumbing, recording, faults, the fake model, batch state.

    A provider subclass declares `ROUTES` (method, path regex, handler name), `MODEL_PATH` (the
    default path suffix of a fault) and the body shapes: `error_body`, `model_response`, and how a
    finished batch item is rendered.
    """

    ROUTES: list[tuple[str, str, str]] = []
    MODEL_PATH = ""
    URL_SUFFIX = ""
    REQUEST_ID_HEADER = "x-request-id"
    SERVER_ERROR = "api_error"  # the error type of a 500

    def __init__(self, *, polls_until_done: int = 2, delay: float = 3.0,
                 rewrite: Callable[[str], str] = default_rewrite, retry_after: tuple[str, str] = ("1", "50"),
                 propose: Callable[[dict], list[str]] = default_propose):
        self.propose = propose  # the llm_search proposer's asks: {"question", "steps", "k"} -> candidate texts
        self.polls_until_done = polls_until_done
        self.delay = delay
        self.rewrite = rewrite
        self.retry_after = retry_after  # (Retry-After seconds, retry-after-ms) sent with a "429"
        self.requests: list[dict] = []
        self.errors: list[str] = []  # tracebacks of bugs in the fake itself (answered with 500)
        self.batches: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self._faults: list[dict] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._routes = [(method, re.compile(pattern + "$"), getattr(self, name))
                        for method, pattern, name in self.ROUTES]
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True,
                                        name=type(self).__name__)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base_url to give the SDK client."""
        return self.root + self.URL_SUFFIX

    def fail_next(self, kind: str, times: int = 1, path: str | None = None) -> None:
        """Make the next `times` requests whose path ends with `path` (default: the model endpoint) fail as `kind`."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}")
        with self._lock:
            self._faults.append({"kind": kind, "times": times, "path": path or self.MODEL_PATH})

    def count(self, path_suffix: str = "") -> int:
        """How many requests arrived whose path ends with `path_suffix` (faulted ones included).

        A request is recorded as it arrives; its record's "status" is filled in once it is answered.
        """
        with self._lock:
            return sum(r["path"].endswith(path_suffix) for r in self.requests)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()  # wakes handlers sleeping on a "timeout" fault
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP plumbing ------------------------------------------------------------------------

    def _handle(self, http: _Handler) -> None:
        path = urlsplit(http.path).path
        raw = http.read_body()
        headers = {k.lower(): v for k, v in http.headers.items()}
        try:
            body = json.loads(raw) if raw and "json" in headers.get("content-type", "") else None
        except ValueError:
            body = None
        record = {"method": http.command, "path": path, "headers": headers, "json": body,
                  "status": None, "fault": None}
        with self._lock:
            self.requests.append(record)
        route = next(((fn, m) for method, pattern, fn in self._routes
                      if method == http.command and (m := pattern.match(path))), None)
        fault = self._take_fault(path, model_call=route is not None and route[0] == self.model)
        record["fault"] = fault
        try:
            if fault in ("429", "500"):
                response = self._fault_response(fault)
            else:
                if fault == "timeout" and self._stopping.wait(self.delay):
                    return
                if route is None:
                    raise BadRequest(f"no route for {http.command} {path}", 404, "not_found_error")
                fn, match = route
                response = fn({"json": body, "raw": raw, "headers": headers, "fault": fault}, *match.groups())
        except BadRequest as e:
            response = Response(e.status, self.error_body(e.kind, str(e)))
        except Exception:  # a bug in the fake: answer 500 and keep the traceback for the test to see
            self.errors.append(traceback.format_exc())
            response = Response(500, self.error_body("api_error", self.errors[-1]))
        record["status"] = response.status
        self._send(http, response)

    def _send(self, http: _Handler, response: Response) -> None:
        payload = response.payload()
        try:
            http.send_response(response.status)
            http.send_header("Content-Type", response.content_type)
            http.send_header("Content-Length", str(len(payload)))
            http.send_header(self.REQUEST_ID_HEADER, f"req_{next(self._ids)}")
            for name, value in response.headers.items():
                http.send_header(name, value)
            http.end_headers()
            http.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a "timeout" fault)
            http.close_connection = True

    def _take_fault(self, path: str, model_call: bool) -> str | None:
        """Consume the first scripted fault that applies to a request to `path`."""
        with self._lock:
            for fault in self._faults:
                if path.endswith(fault["path"]) and (model_call or fault["kind"] in TRANSPORT_FAULTS):
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self._faults.remove(fault)
                    return fault["kind"]
        return None

    def _fault_response(self, kind: str) -> Response:
        if kind == "429":
            seconds, ms = self.retry_after
            return Response(429, self.error_body("rate_limit_error", "Rate limit reached (scripted fault)"),
                            {"Retry-After": seconds, "retry-after-ms": ms})
        return Response(500, self.error_body(self.SERVER_ERROR, "The server had an error (scripted fault)"))

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- the fake model -----------------------------------------------------------------------

    def answer(self, steps: list[dict], fault: str | None) -> dict:
        """{"steps": [{"id", "text"}]}: each step rewritten; "change_number"/"drop_step" spoil it."""
        out = [{"id": s["id"], "text": self.rewrite(s["text"])} for s in steps]
        if fault == "change_number" and out:
            out[0]["text"] = bump_first_number(out[0]["text"])
        if fault == "drop_step":
            out = out[:-1]
        return {"steps": out}

    def steps_of(self, body: dict) -> list[dict]:
        """The steps in the last user message of a model request."""
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        if not users:
            raise BadRequest("messages: no user message")
        try:
            steps = json.loads(text_of(users[-1].get("content")))["steps"]
            return [{"id": s["id"], "text": s["text"]} for s in steps]
        except (ValueError, KeyError, TypeError) as e:
            raise BadRequest(f'user message is not {{"steps": [{{"id", "text"}}]}}: {e}') from None

    def model(self, request: dict) -> Response:
        """The live model endpoint (only content faults get this far)."""
        body = request["json"]
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        ask = self.ask_of(body)
        if ask is not None:  # an llm_search proposal
            answer = {"candidates": [{"text": t} for t in self.propose(ask)]}
            return Response(200, self.structured_response(body, answer, request["fault"]))
        return Response(200, self.model_response(body, self.steps_of(body), request["fault"]))

    def ask_of(self, body: dict) -> dict | None:
        """The proposer's ask {"question", "steps", "k"} in the last user message, or None."""
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        try:
            ask = json.loads(text_of(users[-1].get("content"))) if users else None
        except ValueError:
            return None
        return ask if isinstance(ask, dict) and "question" in ask else None

    def usage(self, body: dict, output) -> tuple[int, int]:
        return tokens([body.get("system"), body.get("messages")]), tokens(output)

    # -- batches ------------------------------------------------------------------------------

    def run_batch(self, items: list[tuple[str, str, dict]]) -> list[dict]:
        """Answer each (custom_id, path, body) now, as the model endpoint would, faults included.

        Returns one outcome per item: {"custom_id", "status": 200 | 429 | 500 | None (expired), "body"}.
        """
        outcomes = []
        for custom_id, path, body in items:
            fault = self._take_fault(path, model_call=True)
            if fault in ("429", "500"):
                status, out = int(fault), self._fault_response(fault).body
            elif fault == "timeout":
                status, out = None, None
            else:
                try:
                    status, out = 200, self.model_response(body, self.steps_of(body), fault)
                except BadRequest as e:
                    status, out = e.status, self.error_body(e.kind, str(e))
            outcomes.append({"custom_id": custom_id, "status": status, "body": out})
        return outcomes

    def new_batch(self, public: dict, outcomes: list[dict]) -> dict:
        batch = {"public": public, "outcomes": outcomes, "polls": 0}
        with self._lock:
            self.batches[public["id"]] = batch
        if self.polls_until_done <= 0:
            self.finish_batch(batch)
        return batch

    def batch(self, batch_id: str) -> dict:
        if batch_id not in self.batches:
            raise BadRequest(f"no batch {batch_id}", 404, "not_found_error")
        return self.batches[batch_id]

    def retrieve_batch(self, request: dict, batch_id: str) -> Response:
        """A retrieve (the route of both providers): count it, finish the batch after `polls_until_done`."""
        with self._lock:
            batch = self.batch(batch_id)
            batch["polls"] += 1
            if batch["polls"] >= self.polls_until_done and not batch.get("done"):
                self.finish_batch(batch)
            elif not batch.get("done"):
                self.batch_in_progress(batch)
            return Response(200, batch["public"])

    def finish_batch(self, batch: dict) -> None:
        batch["done"] = True
        self.batch_done(batch)

    # -- provider hooks -----------------------------------------------------------------------

    def error_body(self, kind: str, message: str) -> dict:
        raise NotImplementedError

    def model_response(self, body: dict, steps: list[dict], fault: str | None) -> dict:
        raise NotImplementedError

    def structured_response(self, body: dict, answer: dict, fault: str | None) -> dict:
        """A model response whose structured output is `answer` ("malformed": a broken one)."""
        raise NotImplementedError

    def batch_in_progress(self, batch: dict) -> None:
        """A retrieve of a batch that is not done yet."""

    def batch_done(self, batch: dict) -> None:
        raise NotImplementedError


def now() -> int:
    return int(time.time())


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class FakeOpenAI(FakeLLMServer):
    """OpenAI: chat completions with json_schema structured output, files, batches."""

    URL_SUFFIX = "/v1"
    MODEL_PATH = "/chat/completions"
    SERVER_ERROR = "server_error"
    ROUTES = [
        ("POST", r"/v1/chat/completions", "model"),
        ("POST", r"/v1/files", "create_file"),
        ("GET", r"/v1/files/([^/]+)", "retrieve_file"),
        ("GET", r"/v1/files/([^/]+)/content", "file_content"),
        ("POST", r"/v1/batches", "create_batch"),
        ("GET", r"/v1/batches/([^/]+)", "retrieve_batch"),
    ]

    def error_body(self, kind, message):
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def model_response(self, body, steps, fault):
        return self.structured_response(body, self.answer(steps, fault), fault)

    def structured_response(self, body, answer, fault):
        content = "{not json" if fault == "malformed" else json.dumps(answer)
        prompt, completion = self.usage(body, content)
        return {"id": self._new_id("chatcmpl-"), "object": "chat.completion", "created": now(),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}

    # -- files --

    def add_file(self, filename: str, data: bytes, purpose: str) -> dict:
        public = {"id": self._new_id("file-"), "object": "file", "bytes": len(data), "created_at": now(),
                  "filename": filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[public["id"]] = {"public": public, "data": data}
        return public

    def create_file(self, request):
        fields, files = parse_multipart(request["headers"].get("content-type", ""), request["raw"])
        if "file" not in files:
            raise BadRequest("multipart body has no 'file' part")
        filename, data = files["file"]
        return Response(200, self.add_file(filename, data, fields.get("purpose", "")))

    def _file(self, file_id):
        if file_id not in self.files:
            raise BadRequest(f"No such File object: {file_id}", 404)
        return self.files[file_id]

    def retrieve_file(self, request, file_id):
        return Response(200, self._file(file_id)["public"])

    def file_content(self, request, file_id):
        return Response(200, self._file(file_id)["data"], content_type="application/octet-stream")

    # -- batches --

    def create_batch(self, request):
        body = request["json"] or {}
        data = self._file(body.get("input_file_id"))["data"]
        try:
            lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
            items = [(line["custom_id"], line.get("url", body.get("endpoint", "")), line["body"]) for line in lines]
        except (ValueError, KeyError, TypeError) as e:
            raise BadRequest(f"input file is not batch JSONL: {e}") from None
        public = {"id": self._new_id("batch_"), "object": "batch", "endpoint": body.get("endpoint"),
                  "errors": None, "input_file_id": body["input_file_id"],
                  "completion_window": body.get("completion_window"), "status": "validating",
                  "output_file_id": None, "error_file_id": None, "created_at": now(),
                  "in_progress_at": None, "expires_at": now() + 86400, "completed_at": None,
                  "request_counts": {"total": len(items), "completed": 0, "failed": 0},
                  "metadata": body.get("metadata")}
        return Response(200, self.new_batch(public, self.run_batch(items))["public"])

    def batch_in_progress(self, batch):
        batch["public"].update(status="in_progress", in_progress_at=now())

    def batch_done(self, batch):
        public, output, errors = batch["public"], [], []
        for outcome in batch["outcomes"]:
            line = {"id": self._new_id("batch_req_"), "custom_id": outcome["custom_id"], "response": None,
                    "error": None}
            if outcome["status"] is None:
                line["error"] = {"code": "batch_expired", "message": "request expired (scripted timeout)"}
            else:
                line["response"] = {"status_code": outcome["status"], "request_id": self._new_id("req_"),
                                    "body": outcome["body"]}
            (output if outcome["status"] == 200 else errors).append(json.dumps(line))
        for lines, key, name in ((output, "output_file_id", "output"), (errors, "error_file_id", "errors")):
            if lines:
                data = ("\n".join(lines) + "\n").encode()
                public[key] = self.add_file(f"{public['id']}_{name}.jsonl", data, "batch_output")["id"]
        public.update(status="completed", completed_at=now(),
                      request_counts={"total": len(batch["outcomes"]), "completed": len(output),
                                      "failed": len(errors)})


class FakeAnthropic(FakeLLMServer):
    """Anthropic: messages with a forced tool for structured output, message batches."""

    MODEL_PATH = "/v1/messages"
    REQUEST_ID_HEADER = "request-id"
    ROUTES = [
        ("POST", r"/v1/messages", "model"),
        ("POST", r"/v1/messages/batches", "create_batch"),
        ("GET", r"/v1/messages/batches/([^/]+)", "retrieve_batch"),
        ("GET", r"/v1/messages/batches/([^/]+)/results", "batch_results"),
    ]

    def error_body(self, kind, message):
        return {"type": "error", "error": {"type": kind, "message": message}}

    def model_response(self, body, steps, fault):
        return self.structured_response(body, self.answer(steps, fault), fault)

    def structured_response(self, body, answer, fault):
        if fault == "malformed":  # the tool's input has the right key with the wrong type
            answer = {key: "oops" for key in answer}
        tool = next((t.get("name") for t in body.get("tools") or []), "propose")
        prompt, completion = self.usage(body, answer)
        return {"id": self._new_id("msg_"), "type": "message", "role": "assistant", "model": body.get("model"),
                "content": [{"type": "tool_use", "id": self._new_id("toolu_"), "name": tool, "input": answer}],
                "stop_reason": "tool_use", "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": completion}}

    def create_batch(self, request):
        try:
            items = [(r["custom_id"], self.MODEL_PATH, r["params"]) for r in (request["json"] or {})["requests"]]
        except (KeyError, TypeError) as e:
            raise BadRequest(f'body must be {{"requests": [{{"custom_id", "params"}}]}}: {e}') from None
        created = datetime.now(timezone.utc)
        public = {"id": self._new_id("msgbatch_"), "type": "message_batch", "processing_status": "in_progress",
                  "request_counts": {"processing": len(items), "succeeded": 0, "errored": 0, "canceled": 0,
                                     "expired": 0},
                  "created_at": iso(created), "expires_at": iso(created + timedelta(days=1)), "ended_at": None,
                  "cancel_initiated_at": None, "archived_at": None, "results_url": None}
        return Response(200, self.new_batch(public, self.run_batch(items))["public"])

    def batch_done(self, batch):
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        lines = []
        for outcome in batch["outcomes"]:
            if outcome["status"] == 200:
                result = {"type": "succeeded", "message": outcome["body"]}
            elif outcome["status"] is None:
                result = {"type": "expired"}
            else:
                result = {"type": "errored", "error": outcome["body"]}
            counts[result["type"]] += 1
            lines.append(json.dumps({"custom_id": outcome["custom_id"], "result": result}))
        batch["results"] = ("\n".join(lines) + "\n").encode()
        batch_id = batch["public"]["id"]
        batch["public"].update(processing_status="ended", request_counts=counts,
                               ended_at=iso(datetime.now(timezone.utc)),
                               results_url=f"{self.root}/v1/messages/batches/{batch_id}/results")

    def batch_results(self, request, batch_id):
        batch = self.batch(batch_id)
        if not batch.get("done"):
            raise BadRequest(f"batch {batch_id} has not ended")
        return Response(200, batch["results"], content_type="application/binary")


def parse_multipart(content_type: str, data: bytes) -> tuple[dict, dict]:
    """A multipart/form-data body as ({field: str}, {field: (filename, bytes)})."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data)
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), payload)
        else:
            fields[name] = payload.decode()
    return fields, files


@pytest.fixture
def openai_server():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def anthropic_server():
    with FakeAnthropic() as server:
        yield server
