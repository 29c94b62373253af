"""python -m generate.record: the safety rules over plain HTTP, then the page itself in
headless Chromium (Playwright, the system browser: skipped where there is none)."""
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from generate.record import BUDGET, Recorder, RecordServer, read_questions
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
    for option in ("--task", "--questions", "--seed", "--out", "--timings", "--host", "--port", "--max-body"):
        assert option in out


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
