"""python -m generate.record: the safety rules over plain HTTP, then the page itself in
headless Chromium (Playwright, the system browser: skipped where there is none)."""
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from generate import record
from generate.record import BUDGET, Recorder, RecordServer, RequestError, read_questions
from solvers import TASKS
from solvers.trace import BACKSPACE, collapse

BS = BACKSPACE


@pytest.fixture
def serve(tmp_path):
    """serve(**recorder options) -> (server, recorder); the server runs on a free port in a thread."""
    servers = []

    def start(**kw):
        kw.setdefault("out", tmp_path / "human")
        recorder = Recorder(**kw)
        server = RecordServer(recorder, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, recorder

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def post(server, path, body, headers=None, raw=None):
    """(status, reply as a dict) of a POST; the body is JSON unless ``raw`` bytes are given."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def answer_of(recorder, q):
    """The right answer of an arithmetic question, found with the task's own verifier."""
    return next(x for x in range(1, 100_000) if TASKS["arithmetic"].verify(q.puzzle, x))


def traces(folder):
    return sorted(p for p in Path(folder).glob("*.json") if not p.name.endswith(".timings.json"))


# ----------------------------------------------------------------------------- HTTP

def test_save_writes_the_seed_format_with_an_int_answer(serve, tmp_path):
    server, rec = serve(timings=True)
    status, q = post(server, "/api/next", {})
    assert status == 200 and q["id"] == 0 and q["answer_kind"] == "integer"
    ans = answer_of(rec, rec.question(0))
    stream = f"Maybe 1{BS}{ans}.\nAnswer: {ans}"
    timings = [[i * 10, c] for i, c in enumerate(stream)]
    status, reply = post(server, "/api/save", {"id": 0, "question": q["question"], "answer": f" {ans} ",
                                               "reasoning": stream, "timings": timings})
    assert status == 200, reply
    (path,) = traces(tmp_path / "human")
    assert path.name == reply["saved"] and path.name.startswith("arithmetic-")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert list(saved)[:3] == ["Question", "Answer", "Reasoning"]  # the seed fields, verbatim, first
    assert saved["Reasoning"] == stream and saved["Question"] == q["question"]
    assert saved["Answer"] == ans and type(saved["Answer"]) is int
    assert saved["task"] == "arithmetic" and saved["puzzle"] == rec.question(0).puzzle
    assert json.loads(path.with_name(path.stem + ".timings.json").read_text()) == timings
    # the same question again: refused, not a second file
    status, reply = post(server, "/api/save", {"id": 0, "answer": str(ans), "reasoning": stream})
    assert status == 409 and "already saved" in reply["error"]


def test_questions_are_deterministic_and_recorded_ones_are_not_asked_again(serve, tmp_path):
    _, a = serve(seed=7)
    _, b = serve(seed=7)
    assert a.question(3) == b.question(3)  # a reload after a restart names the same question
    assert a.question(3).text != Recorder(seed=8, out=tmp_path).question(3).text
    out = tmp_path / "human"
    out.mkdir(parents=True, exist_ok=True)
    (out / "old.json").write_text(json.dumps({"Question": a.question(0).text, "Answer": 1, "Reasoning": "x"}))
    server, _ = serve(seed=7)
    assert post(server, "/api/next", {})[1]["id"] == 1  # question 0 is already in --out


def test_wrong_and_malformed_answers_and_reasonings(serve):
    server, rec = serve()
    q = rec.question(0)
    ans = answer_of(rec, q)
    ok = f"So {ans}.\nAnswer: {ans}"
    cases = [  # (body changes, status, words in the error), each a way a save goes wrong
        ({"answer": str(ans + 1)}, 409, "wrong"),                    # the verifier says no
        ({"answer": f"{ans}.0"}, 400, "integer"),                    # not an integer
        ({"reasoning": "ab" + BS * 3 + ok}, 400, "erases more"),     # more backspaces than text
        ({"reasoning": ok.replace("\n", "\r\n")}, 400, "U+000D"),    # no control characters but \n, \b
        ({"reasoning": "x" + BS}, 400, "empty"),                     # nothing left on the page
        ({"reasoning": f"{ans}\nDone."}, 400, "Answer: "),           # last line does not state it
        ({"reasoning": 5}, 400, "string"),
        ({"id": -1}, 400, "question number"),
        ({"id": "0"}, 400, "question number"),
        ({"question": "What is 1 ÷ 1?"}, 409, "not the one on the page"),  # restored page, other seed
        ({"extra": 1}, 400, "unknown field"),
        ({"timings": [[0, "x"]]}, 200, ""),                          # ignored: --timings is off
    ]
    for change, status, words in cases:
        body = {"id": 0, "answer": str(ans), "reasoning": ok, **change}
        got, reply = post(server, "/api/save", body)
        assert got == status and words in reply.get("error", ""), (change, got, reply)
    assert post(server, "/api/check", {"id": 0, "answer": str(ans)})[1]["correct"] is True
    assert post(server, "/api/check", {"id": 0, "answer": str(ans + 1)})[1]["correct"] is False


def test_client_file_names_are_refused(serve, tmp_path):
    server, rec = serve()
    ans = answer_of(rec, rec.question(0))
    for key in ("name", "filename", "path", "file"):
        status, reply = post(server, "/api/save", {"id": 0, "answer": str(ans), "reasoning": f"Answer: {ans}",
                                                   key: "../../escaped.json"})
        assert status == 400 and "server chooses file names" in reply["error"]
    for path in ("/../../etc/passwd", "/record_page.html", "/generate/record.py", "/%2e%2e/x"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10)
        assert e.value.code == 404
    assert not list(tmp_path.rglob("escaped.json")) and not traces(tmp_path / "human")


def test_oversized_malformed_and_cross_site_requests(serve):
    server, rec = serve(max_body=1024)
    status, reply = post(server, "/api/save", None, raw=b'{"reasoning": "' + b"a" * 2000 + b'"}')
    assert status == 413 and "1024-byte limit" in reply["error"]
    status, reply = post(server, "/api/save", None, raw=b'{"id": 0, "answer": ')
    assert status == 400 and reply["error"].startswith("malformed JSON")
    status, reply = post(server, "/api/save", None, raw=b"[1, 2]")
    assert status == 400 and "JSON object" in reply["error"]
    status, reply = post(server, "/api/save", None, raw=b"\xff\xfe")
    assert status == 400 and "malformed JSON" in reply["error"]
    # a form post from another site (text/plain needs no CORS preflight) is refused
    status, reply = post(server, "/api/next", None, raw=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends Host: evil.example
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("GET", "/", headers={"Host": "evil.example"})
    assert conn.getresponse().status == 403
    conn.close()


def test_an_existing_file_is_never_overwritten(serve, tmp_path):
    server, rec = serve()
    rec._stamp = lambda: "20250101-000000"
    out = tmp_path / "human"
    out.mkdir(parents=True, exist_ok=True)
    taken = out / "arithmetic-20250101-000000-0001.json"
    taken.write_text("keep me")
    ans = answer_of(rec, rec.question(0))
    status, reply = post(server, "/api/save", {"id": 0, "answer": str(ans), "reasoning": f"Answer: {ans}"})
    assert status == 200 and reply["saved"] == "arithmetic-20250101-000000-0002.json"
    assert taken.read_text() == "keep me"


def test_questions_file(serve, tmp_path):
    qfile = tmp_path / "q.jsonl"
    lines = [{"Question": "What is 12 + 30?", "Answer": 42},
             {"Question": "How many legs do 3 spiders have?"},        # no Answer: saved unchecked
             {"puzzle": {"numbers": [2, 3, 4], "target": 24}, "task": "countdown"}]
    qfile.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    server, rec = serve(questions=qfile)
    got = [post(server, "/api/next", {})[1] for _ in range(4)]
    assert [g.get("answer_kind") for g in got[:3]] == ["integer", "integer", "text"]
    assert got[3]["done"] is True
    assert post(server, "/api/check", {"id": 0, "answer": "41"})[1]["correct"] is False
    assert post(server, "/api/check", {"id": 1, "answer": "24"})[1]["correct"] is None
    for i, (answer, reasoning) in enumerate([("42", "12 + 30 = 42\nAnswer: 42"),
                                             ("48", "8 legs each: 24\b\b48\nAnswer: 48"),
                                             ("2*3*4", "2*3 = 6, 6*4 = 24\nAnswer: 2*3*4")]):
        status, reply = post(server, "/api/save", {"id": i, "answer": answer, "reasoning": reasoning})
        assert status == 200, reply
    saved = [json.loads(p.read_text(encoding="utf-8")) for p in traces(tmp_path / "human")]
    by_question = {s["Question"]: s for s in saved}
    assert by_question["What is 12 + 30?"] == {"Question": "What is 12 + 30?", "Answer": 42,
                                              "Reasoning": "12 + 30 = 42\nAnswer: 42"}
    assert by_question["How many legs do 3 spiders have?"]["Answer"] == 48
    countdown = next(s for s in saved if s.get("task") == "countdown")
    assert countdown["Answer"] == "2*3*4" and countdown["puzzle"] == {"numbers": [2, 3, 4], "target": 24}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Question": "What is 1 + 1?", "Answer": "2"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: 'Answer' must be an integer"):
        read_questions(bad, "arithmetic")


def test_saved_traces_pass_the_human_trace_checker(serve, tmp_path):
    """What the recorder writes is what generate.human reads (where that module is present)."""
    human = pytest.importorskip("generate.human")
    server, rec = serve()
    ans = answer_of(rec, rec.question(0))
    post(server, "/api/save", {"id": 0, "answer": str(ans), "reasoning": f"Try 1{BS}{ans}\nAnswer: {ans}"})
    good, bad = human.read_folder(tmp_path / "human")
    assert len(good) == 1 and not bad, bad


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "generate.record", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    for option in ("--task", "--questions", "--seed", "--out", "--timings", "--host", "--port", "--max-body",
                   "--reanswer", "--timeout", "--max-threads", "--allow-host"):
        assert option in out


# ----------------------------------------------------------------------------- hardening

def files(folder):
    """Every entry of the trace folder, temporary and hidden ones included."""
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def raw(server, data, timeout=10):
    """Send raw bytes; (status or None, the whole reply) once the server closes or answers."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        try:
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else None
    return status, reply


def save_body(rec, index=0, **change):
    ans = answer_of(rec, rec.question(index))
    return {"id": index, "answer": str(ans), "reasoning": f"So {ans}.\nAnswer: {ans}", **change}


def test_unencodable_strings_are_refused_before_anything_is_written(serve, tmp_path):
    server, rec = serve(timings=True)
    good = json.dumps(save_body(rec))
    cases = [  # (raw JSON body, words in the error): each a body that once gave a 500 or a 0-byte file
        (good.replace('"reasoning": "', '"reasoning": "\\ud800'), "lone surrogate U+D800"),  # a 0-byte trace before
        (good.replace('"answer": "', '"answer": "\\udfff'), "lone surrogate U+DFFF"),
        (good.replace('"reasoning": "', '"reasoning": "\\u0000'), "NUL"),
        ('{"id": 0, "\\ud800": 1}', "a key of the object"),
        ('{"id": ' + "9" * 5000 + "}", "integer_too_long"),  # Python's int limit: a ValueError, a 500
        ('{"id": ' + "[" * 20_000 + "]" * 20_000 + "}", "too_deep"),  # RecursionError: a 500
        ('{"id": NaN}', "NaN"),
    ]
    for body, words in cases:
        status, reply = post(server, "/api/save", None, raw=body.encode())
        assert status == 400 and words in reply["error"], (body[:60], status, reply)
    # the recorder's own check, should a string get past the JSON reader
    for reasoning, answer in ((f"x\ud800\nAnswer: 1", "1"), ("Answer: 1", "1\udc80")):
        with pytest.raises(RequestError) as e:
            rec.save(rec.question(0), reasoning, answer, None)
        assert e.value.status == 400 and "lone surrogate" in str(e.value)
    assert files(tmp_path / "human") == []
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"Question": "What is 1 + 1?"}\n{"Question": "What is 1 + 1?\\ud800"}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2: bad_unicode: 'Question' holds a lone surrogate"):
        read_questions(bad, "arithmetic")


def test_a_trace_is_written_whole_or_not_at_all(serve, tmp_path, monkeypatch):
    server, rec = serve(timings=True)
    real = record._write_file

    def half_then_disk_full(path, data):
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    stream = save_body(rec)["reasoning"]
    for failing in ("trace", "timings"):  # the disk fills while writing the trace, or its timings
        monkeypatch.setattr(record, "_write_file",
                            lambda path, data: (half_then_disk_full if failing in path.name else real)(path, data))
        status, reply = post(server, "/api/save", save_body(rec, timings=[[i, c] for i, c in enumerate(stream)]))
        assert status == 500 and "No space left" in reply["error"], reply
        assert files(tmp_path / "human") == []  # no partial file, no temporary file
    monkeypatch.setattr(record, "_write_file", real)
    status, reply = post(server, "/api/save", save_body(rec))
    assert status == 200 and files(tmp_path / "human") == [reply["saved"]]


def test_concurrent_saves_of_one_question_save_it_once(serve, tmp_path):
    server, rec = serve()
    body = save_body(rec)
    barrier = threading.Barrier(200)

    def save(_):
        barrier.wait()
        return post(server, "/api/save", body)[0]

    with ThreadPoolExecutor(200) as pool:  # 200 at once: the listen queue and the thread bound hold them
        statuses = sorted(pool.map(save, range(200)))
    assert statuses == [200] + [409] * 199
    assert len(traces(tmp_path / "human")) == 1
    # a restarted recorder on the same folder does not save it again either
    server2, rec2 = serve()
    status, reply = post(server2, "/api/save", save_body(rec2))
    assert status == 409 and "already recorded" in reply["error"]
    assert len(traces(tmp_path / "human")) == 1


def test_reanswering_saves_each_answer_whole(serve, tmp_path):
    server, rec = serve(reanswer=True, timings=True)
    body = save_body(rec)
    body["timings"] = [[i, c] for i, c in enumerate(body["reasoning"])]
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: post(server, "/api/save", body)[0], range(20)))
    assert statuses == [200] * 20
    saved = traces(tmp_path / "human")
    assert len(saved) == 20 and len(files(tmp_path / "human")) == 40  # each trace beside its timings
    assert all(json.loads(p.read_text(encoding="utf-8"))["Reasoning"] == body["reasoning"] for p in saved)


def test_when_every_question_is_recorded_none_is_handed_out_unless_reanswering(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "SEARCH_LIMIT", 3)  # a puzzle space of 3, all recorded
    for reanswer, first in ((False, None), (True, 2)):
        rec = Recorder(out=tmp_path / "human", reanswer=reanswer)
        rec._done = {rec.question(i).text for i in range(3)}
        q = rec.next_question()
        assert (q.index if q else None) == first  # a recorded one would be refused on save


def test_malformed_headers_get_400(serve, tmp_path):
    server, rec = serve()
    port = server.server_address[1]
    body = json.dumps(save_body(rec)).encode()
    head = f"POST /api/save HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    cases = [  # (extra header lines, status): each a Content-Length the server must not guess at
        ("Content-Length: \u00b2\r\n", 400),                # "²".isdigit() is True: a 500 before
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: 1e3\r\n", 400),
        ("Content-Length: 0x10\r\n", 400),
        ("Content-Length: " + "9" * 30 + "\r\n", 400),     # more digits than any body
        (f"Content-Length: {len(body)}\r\nContent-Length: {len(body) + 1}\r\n", 400),  # two lengths
        (f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n", 400),
        ("", 411),                                          # none at all
        (f"Content-Length: {len(body)}\r\n", 200),          # the well-formed request, to show the rest is right
    ]
    for extra, status in cases:
        got, reply = raw(server, (head + extra + "\r\n").encode("latin-1") + body)
        assert got == status, (extra, reply[:200])
    assert len(traces(tmp_path / "human")) == 1


def test_stalled_requests_are_dropped_after_the_timeout(tmp_path):
    rec = Recorder(out=tmp_path / "human")
    server = RecordServer(rec, "127.0.0.1", 0, timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        head = (f"POST /api/next HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 100\r\n\r\n").encode()
        cases = [  # (bytes sent, pause between them, the status): ways an upload stalls
            ([head + b"{"], 0, 408),                      # half a body, then nothing
            ([head] + [b" "] * 6, 0.2, 408),              # a byte every 0.2 s: the whole body has 0.5 s
            ([head[:20]], 0, None),                       # half the headers: closed without a reply
        ]
        for parts, pause, status in cases:
            start = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                for part in parts:
                    s.sendall(part)
                    if select.select([s], [], [], pause)[0]:  # the server answered: stop sending
                        break
                reply = b""
                try:
                    while chunk := s.recv(65536):  # ends when the server closes the connection
                        reply += chunk
                except ConnectionResetError:
                    pass
            took = time.monotonic() - start
            got = int(reply.split(b" ", 2)[1]) if reply else None
            assert got == status and 0.4 < took < 5, (parts[-1], got, took, reply[:100])
    finally:
        server.shutdown()
        server.server_close()


def test_handler_threads_are_bounded(tmp_path):
    """Two slots, both held by stalled uploads: a third request waits for one to time out
    (it is queued, not refused, and not served by a third thread)."""
    rec = Recorder(out=tmp_path / "human")
    server = RecordServer(rec, "127.0.0.1", 0, timeout=1.0, max_threads=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stalled = []
    try:
        port = server.server_address[1]
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /api/next HTTP/1.1\r\n")
            stalled.append(s)
        time.sleep(0.1)
        start = time.monotonic()
        with urllib.request.urlopen(server.url + "api/config", timeout=10) as r:
            assert r.status == 200
        assert time.monotonic() - start > 0.7
    finally:
        for s in stalled:
            s.close()
        server.shutdown()
        server.server_close()


def test_writing_requests_must_come_from_the_served_page(serve, tmp_path):
    server, rec = serve(reanswer=True)
    port = server.server_address[1]
    own = f"http://127.0.0.1:{port}"
    cases = [  # (headers, status): who may write
        ({"Origin": "http://evil.example"}, 403),                         # a page in another tab
        ({"Origin": "null"}, 403),                                        # a sandboxed frame, a file:// page
        ({"Origin": f"http://127.0.0.1:{port + 1}"}, 403),                # another local server's page
        ({"Origin": f"https://127.0.0.1:{port}"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),                          # a browser that sent no Origin
        ({"Host": f"localhost:{port}", "Origin": own}, 403),              # Origin and Host disagree
        ({"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, 403),  # DNS rebinding
        ({"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}, 200),
        ({"Origin": own}, 200),                                           # the page itself
        ({}, 200),                                                        # curl, a script: no browser
    ]
    for headers, status in cases:
        before = len(traces(tmp_path / "human"))
        got, reply = post(server, "/api/save", save_body(rec), headers=headers)
        assert got == status, (headers, reply)
        assert len(traces(tmp_path / "human")) == before + (status == 200)  # a refused save writes nothing


def test_allowed_hosts():
    cases = [  # (bound address, port, --allow-host, Host headers accepted, refused)
        ("127.0.0.1", 8765, (), {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"},
         {"127.0.0.1", "127.0.0.1:80", "recorder.lan:8765"}),
        ("127.0.0.1", 8765, ("recorder.lan",), set(), {"recorder.lan:8765"}),  # loopback: names nothing else
        ("0.0.0.0", 8765, ("recorder.lan",), {f"{socket.gethostname().lower()}:8765", "recorder.lan:8765"},
         {"evil.example:8765", "recorder.lan:8766"}),
        ("0.0.0.0", 80, (), {"localhost", "localhost:80"}, {"evil.example"}),  # port 80 may go unsaid
    ]
    for host, port, extra, accepted, refused in cases:
        hosts = record.allowed_hosts(host, port, extra)
        assert accepted <= hosts and not refused & hosts, (host, port, extra, hosts)


def test_any_address_keeps_the_host_and_origin_checks(tmp_path):
    rec = Recorder(out=tmp_path / "human")
    server = RecordServer(rec, "0.0.0.0", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        name = socket.gethostname()
        cases = [  # (Host, Origin, status)
            (f"evil.example:{port}", None, 403),      # was accepted: the check was off for 0.0.0.0
            (f"{name}:{port + 1}", None, 403),        # this machine, another port
            (f"{name}:{port}", "http://evil.example", 403),
            (f"127.0.0.1:{port}", None, 200),
            (f"{name}:{port}", f"http://{name}:{port}", 200),  # the machine's own name
        ]
        for host, origin, status in cases:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Host": host, "Content-Type": "application/json", **({"Origin": origin} if origin else {})}
            conn.request("POST", "/api/next", body=b"{}", headers=headers)
            assert conn.getresponse().status == status, (host, origin)
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
    proc = subprocess.Popen([sys.executable, "-m", "generate.record", "--host", "0.0.0.0", "--port", "0",
                             "--out", str(tmp_path / "h")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("recording")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: --host 0.0.0.0 makes the recorder reachable from the network" in err


# ----------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture
def browser_page():
    if CHROMIUM is None:
        pytest.skip("no Chromium (/usr/bin/chromium or chromium on PATH): `make browser` installs "
                    "Debian's where apt is available")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        # bypass_csp: the page forbids eval, which wait_for_function("...") uses
        context = browser.new_context(permissions=["clipboard-read", "clipboard-write"], bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
        browser.close()


def test_browser_records_typed_backspaces(serve, tmp_path, browser_page):
    page = browser_page
    server, rec = serve(timings=True)
    page.goto(server.url)
    page.wait_for_function("document.getElementById('question').dataset.id === '0'")
    q = rec.question(0)
    ans = answer_of(rec, q)
    assert page.inner_text("#question") == q.text
    stream = ""

    def typed(text):  # type as a person does; mirror what the stream should be
        nonlocal stream
        page.keyboard.type(text)
        stream += text

    def backspace(n=1):
        nonlocal stream
        for _ in range(n):
            page.keyboard.press("Backspace")
        stream += BS * n

    def visible():
        return page.input_value("#editor")

    page.click("#editor")
    typed("Guess 1 × 9")           # "×" is not on the keyboard: it arrives as insertText
    backspace(5)
    typed("7.\nHmm")
    # cursor moves and a click in the middle change nothing: the next key still goes to the end
    for key in ("ArrowLeft", "ArrowUp", "Home", "Delete", "Control+a"):
        page.keyboard.press(key)
    page.click("#editor", position={"x": 10, "y": 10})
    typed("!")
    assert visible() == collapse(stream)

    # paste is blocked: a real Ctrl+V with text on the clipboard, and a paste event
    page.evaluate("navigator.clipboard.writeText('PASTED')")
    page.keyboard.press("Control+v")
    page.keyboard.press("Shift+Insert")
    prevented = page.evaluate("""() => {
        const dt = new DataTransfer(); dt.setData('text/plain', 'PASTED');
        const e = new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true});
        document.getElementById('editor').dispatchEvent(e);
        const d = new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true});
        document.getElementById('editor').dispatchEvent(d);
        return [e.defaultPrevented, d.defaultPrevented];
    }""")
    assert prevented == [True, True]
    assert "PASTED" not in visible() and visible() == collapse(stream)

    # a reload mid-trace restores the unsaved stream from localStorage
    page.reload()
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Restored')")
    assert visible() == collapse(stream)
    page.click("#editor")
    backspace(4)                   # "Hmm!" erased: the stream keeps the letters and 4 backspaces
    typed(f"So {ans}.\nAnswer: {ans}")
    assert visible() == collapse(stream)
    assert page.inner_text("#count").startswith(f"{len(stream)} / {BUDGET}")
    assert page.evaluate("document.getElementById('stream').textContent") == stream.replace(BS, "⌫")

    page.fill("#answer", str(ans))
    page.click("#check")
    page.wait_for_function("document.getElementById('status').textContent === 'right'")
    page.click("#save")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Saved')")

    (path,) = traces(tmp_path / "human")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["Reasoning"] == stream and saved["Reasoning"].count(BS) == 9
    assert saved["Question"] == q.text
    assert saved["Answer"] == ans and type(saved["Answer"]) is int
    timings = json.loads(path.with_name(path.stem + ".timings.json").read_text(encoding="utf-8"))
    assert "".join(key for _, key in timings) == stream
    assert all(a[0] <= b[0] for a, b in zip(timings, timings[1:]))

    # after saving: the editor is read-only, Next gives the next question; Skip another
    assert page.is_disabled("#save")
    page.click("#next")
    page.wait_for_function("document.getElementById('question').dataset.id === '1'")
    assert visible() == "" and page.is_disabled("#next")
    page.click("#editor")
    typed("abandoned")
    page.click("#skip")
    page.wait_for_function("document.getElementById('question').dataset.id === '2'")
    assert visible() == "" and page.inner_text("#question") == rec.question(2).text
    assert len(traces(tmp_path / "human")) == 1
