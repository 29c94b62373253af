"""The recorder's HTTP server (``python -m generate.record``): the page, and the JSON API
through which it asks ``generate.record.Recorder`` for questions, checks answers and saves.

Safety: binds to 127.0.0.1; the server chooses every file name (a request that names one
gets 400); bodies over ``--max-body`` bytes get 413, malformed JSON or headers (a
Content-Length that is not plain digits, Transfer-Encoding) 400; a trace is validated in full,
every string encodable as UTF-8, before anything is written, then written to a temporary file
and linked into place, so it is complete or absent and never overwrites a file; saves are
serialised, so a question is saved once (``--reanswer`` allows more). A request whose Host is
not this server's, or a POST whose Origin is not the page's, is refused (403); POSTs must be
application/json (415): a web page in another tab cannot drive the recorder. A body must
arrive within ``--timeout`` seconds (else 408 and the connection is closed); at most
``--max-threads`` requests are served at once, the rest wait in a 128-deep listen queue.
``--host 0.0.0.0`` exposes the recorder to the network: it prints a warning and still accepts
only the machine's own names and addresses as Host and Origin.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any

from generate.human import BadFile, parse

if TYPE_CHECKING:  # annotations only: generate.record imports this module
    from generate.record import Question, Recorder

BUDGET = 2048            # the seed format's "ideally under 2048 characters" of Reasoning
MAX_BODY = 64 * 1024     # 2048 characters plus their timings is about 30 KB of JSON
TIMEOUT = 10.0           # seconds a request's headers or body may take to arrive
MAX_THREADS = 32         # requests served at once; more wait in the listen queue
LOOPBACK = ("127.0.0.1", "localhost", "::1")
NAME_KEYS = {"name", "filename", "file", "path", "out", "dir"}
_DIGITS = re.compile(r"[0-9]{1,18}")  # a Content-Length: ASCII digits only ("²".isdigit() is True)


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message the page shows as it is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

# ----------------------------------------------------------------------------- HTTP

def page_html() -> str:
    return resources.files("generate").joinpath("record_page.html").read_text(encoding="utf-8")


class Handler(BaseHTTPRequestHandler):
    server: "RecordServer"
    server_version = "backspace-record"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # the socket's: no read waits longer than this
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; "
                                                    "style-src 'unsafe-inline'; frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")  # ASCII: always encodable

    def _host_ok(self) -> bool:
        """Refuse a Host that is not one of this server's names and port (DNS rebinding: a web
        page whose name resolves to this machine would otherwise reach the recorder)."""
        return self.headers.get("Host", "").strip().lower() in self.server.hosts

    def _origin_ok(self) -> bool:
        """A writing request must come from the page this server served: its Origin is
        ``http://`` + the Host it was sent to. Browsers send Origin with every POST; a request
        without one (curl, a script) is not a web page in another tab."""
        origin = self.headers.get("Origin")
        if origin is None:
            return self.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
        return origin.strip().lower() == "http://" + self.headers.get("Host", "").strip().lower()

    def _refuse(self) -> str:
        hosts = ", ".join(sorted(self.server.hosts))
        return f"this recorder answers only requests to {self.server.url} (Host: {hosts})"

    def do_GET(self) -> None:
        if not self._host_ok():
            return self._json(403, {"error": self._refuse()})
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, self.server.page, "text/html; charset=utf-8")
        if path == "/favicon.ico":  # asked for by every browser; there is none
            return self._send(204, b"", "image/x-icon")
        if path == "/api/config":
            r = self.server.recorder
            return self._json(200, {"budget": BUDGET, "timings": r.timings, "source": r.source,
                                    "max_body": r.max_body, "allow_wrong": r.allow_wrong})
        self._json(404, {"error": f"no such page: {path[:100]}"})

    def do_POST(self) -> None:
        try:
            if not self._host_ok():
                self.close_connection = True
                raise RequestError(403, self._refuse())
            if not self._origin_ok():
                self.close_connection = True
                raise RequestError(403, f"a request from the page of {str(self.headers.get('Origin'))[:100]!r} is not "
                                        f"this recorder's page: refused")
            body = self._body()
            path = self.path.split("?", 1)[0]
            routes = {"/api/next": self._next, "/api/question": self._question,
                      "/api/check": self._check, "/api/save": self._save}
            if path not in routes:
                raise RequestError(404, f"no such endpoint: {path[:100]}")
            status, reply = routes[path](body)
        except RequestError as e:
            status, reply = e.status, {"error": str(e)}
        except Exception as e:  # a bug: say so, keep serving
            self.close_connection = True
            status, reply = 500, {"error": f"server error: {type(e).__name__}: {e}"}
        self._json(status, reply)

    def _length(self) -> int:
        """The Content-Length: one value of plain ASCII digits; anything else is a 400 (a
        body of unknown length is not read at all)."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise RequestError(400, "Transfer-Encoding is not accepted: send a Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            raise RequestError(411, "a request body needs a Content-Length")
        if len(set(v.strip() for v in values)) > 1 or not _DIGITS.fullmatch(values[0].strip()):
            shown = ", ".join(values)[:40]
            raise RequestError(400, f"malformed Content-Length {shown!r}: expected one number of bytes")
        return int(values[0])

    def _read(self, length: int) -> bytes:
        """``length`` bytes of body, all of them within the request timeout (a client that
        sends one byte a second cannot hold the thread longer), or 408/400."""
        deadline = time.monotonic() + self.server.request_timeout
        chunks, left = [], length
        try:
            while left > 0:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError
                self.connection.settimeout(wait)
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    raise RequestError(400, f"the body ended after {length - left} of {length} bytes")
                chunks.append(chunk)
                left -= len(chunk)
        except (TimeoutError, socket.timeout):
            raise RequestError(408, f"the body did not arrive within {self.server.request_timeout:g} s: "
                                    f"{length - left} of {length} bytes") from None
        finally:
            self.connection.settimeout(self.server.request_timeout)
        return b"".join(chunks)

    def _body(self) -> dict:
        try:
            length = self._length()
            limit = self.server.recorder.max_body
            if length > limit:
                if length <= 16 * limit:  # read it out, so the client sees the 413 rather than a reset
                    self._read(length)
                raise RequestError(413, f"request body of {length} bytes is over the {limit}-byte limit")
            raw = self._read(length)
        except RequestError:
            self.close_connection = True  # where the next request would start is unknown
            raise
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")
        try:  # human.parse: also a huge integer, deep nesting, a lone surrogate or NUL is a 400
            body = parse(raw)
        except BadFile as e:
            raise RequestError(400, f"malformed JSON: {e}") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"malformed request: expected a JSON object, got {type(body).__name__}")
        named = NAME_KEYS & set(body)
        if named:
            raise RequestError(400, f"the server chooses file names: {sorted(named)} not allowed")
        return body

    @staticmethod
    def _fields(body: dict, allowed: set[str]) -> None:
        unknown = set(body) - allowed
        if unknown:
            raise RequestError(400, f"unknown field(s) {sorted(unknown)[:5]}; allowed: {sorted(allowed)}")

    @staticmethod
    def _describe(q: Question) -> dict:
        return {"id": q.index, "question": q.text, "task": q.task,
                "answer_kind": "integer" if q.integer_answer else "text",
                "checked": q.task is not None or q.answer is not None}

    def _next(self, body: dict) -> tuple[int, dict]:
        self._fields(body, set())
        q = self.server.recorder.next_question()
        if q is None:
            return 200, {"done": True, "message": f"no more questions in {self.server.recorder.source}"}
        return 200, self._describe(q)

    def _question(self, body: dict) -> tuple[int, dict]:
        self._fields(body, {"id"})
        return 200, self._describe(self.server.recorder.question(body.get("id")))

    def _lookup(self, body: dict) -> Question:
        """The question named by ``id``; ``question`` (the text the page shows) must match it,
        so a page restored after a restart with another seed cannot save under the wrong one."""
        q = self.server.recorder.question(body.get("id"))
        if "question" in body and body["question"] != q.text:
            raise RequestError(409, f"question {q.index} of this server is not the one on the page "
                                    f"(restarted with another --task, --seed or --questions?): skip it")
        return q

    def _check(self, body: dict) -> tuple[int, dict]:
        self._fields(body, {"id", "question", "answer"})
        correct, value, message = self.server.recorder.check(self._lookup(body), body.get("answer"))
        return 200, {"correct": correct, "message": message}

    def _save(self, body: dict) -> tuple[int, dict]:
        self._fields(body, {"id", "question", "answer", "reasoning", "timings"})
        q = self._lookup(body)
        return 200, self.server.recorder.save(q, body.get("reasoning"), body.get("answer"), body.get("timings"))


def allowed_hosts(host: str, port: int, extra: tuple[str, ...] = ()) -> set[str]:
    """The Host headers (lower case, with the port) this server answers: the loopback names;
    for another address the address itself, and for 0.0.0.0 or :: the machine's own names and
    addresses; plus ``extra`` names (``--allow-host``)."""
    names = {"127.0.0.1", "localhost", "::1"}
    if host not in LOOPBACK:
        if host in ("", "0.0.0.0", "::"):
            names |= {socket.gethostname(), socket.getfqdn()}
            try:  # the address of the default route; connecting a UDP socket sends nothing
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.connect(("192.0.2.1", 9))
                    names.add(probe.getsockname()[0])
            except OSError:
                pass
        else:
            names.add(host)
        names |= set(extra)
        for name in list(names):
            try:
                names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
            except (OSError, UnicodeError):
                pass
    hosts = set()
    for name in names:
        name = name.lower().split("%")[0]  # an IPv6 scope id is not part of a Host header
        shown = f"[{name}]" if ":" in name else name
        hosts.add(f"{shown}:{port}")
        if port == 80:
            hosts.add(shown)
    return hosts


class RecordServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's default of 5 reset connections)

    def __init__(self, recorder: Recorder, host: str = "127.0.0.1", port: int = 8765,
                 verbose: bool = False, timeout: float = TIMEOUT, max_threads: int = MAX_THREADS,
                 allow_hosts: tuple[str, ...] = ()) -> None:
        if timeout <= 0 or max_threads < 1:
            raise ValueError(f"--timeout must be > 0 and --max-threads >= 1; got {timeout}, {max_threads}")
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.recorder, self.verbose = recorder, verbose
        self.request_timeout = timeout
        self._slots = threading.BoundedSemaphore(max_threads)
        self.loopback = host in LOOPBACK
        self.hosts = allowed_hosts(host, self.server_address[1], tuple(allow_hosts))
        self.page = page_html().encode("utf-8")

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per request, at most ``max_threads`` at once: the accept loop waits for a
        free slot, and new connections wait in the listen queue meanwhile."""
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
