"""solvers.sandbox: each hostile program is stopped or refused, and the caller keeps running.

Timeouts here are 1 s and the bounds on durations are generous (a loaded 2-core machine can
take a second longer to start or kill a process), so the file takes ~10 s, not minutes.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import uuid

import pytest

from solvers import sandbox
from solvers.sandbox import run

ROOT = os.geteuid() == 0
SLACK = 3.0  # seconds a kill may take past its deadline on a busy machine


def _live_pids(uid: int | None = None, pgid: int | None = None) -> list[int]:
    """Processes (zombies aside) with this real uid or in this process group, from /proc."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            with open(f"/proc/{name}/stat") as f:
                process_group = int(f.read().rsplit(")", 1)[1].split()[2])
        except (OSError, ValueError, IndexError):
            continue
        if status["State"].strip().startswith(("Z", "X")):
            continue
        if (uid is not None and int(status["Uid"].split()[0]) == uid) or process_group == pgid:
            found.append(int(name))
    return found


# (program, run() keywords, what must hold). `None` in a field means "not checked".
CASES = [
    # The ordinary case: output comes back exactly, exit status 0, nothing killed.
    ("print(6 * 7)\nprint('é ✓')", {}, dict(returncode=0, stdout="42\né ✓\n", stderr="", killed_by=None)),
    # The standard library is there, site-packages are not (-S): programs are stdlib only.
    ("import math, fractions, itertools, json\nprint(math.comb(5, 2))", {}, dict(returncode=0, stdout="10\n")),
    # An exception: a traceback naming the program's line, no sandbox frames, returncode 1.
    ("x = 1\n1 / 0", {}, dict(returncode=1, stderr_has=['File "<program>", line 2', "ZeroDivisionError"],
                               stderr_lacks=['File "<string>"'])),
    # sys.exit passes its status through.
    ("import sys\nsys.exit(3)", {}, dict(returncode=3)),
    # A syntax error is reported like Python would, without running anything.
    ("print('a')\nprint(", {}, dict(returncode=1, stdout="", stderr_has=["SyntaxError"])),
    # An indentation error is a syntax error too.
    ("if True:\nprint('a')", {}, dict(returncode=1, stderr_has=["IndentationError"])),
    # stdin is /dev/null: input() sees end of file at once instead of hanging until the timeout.
    ("print(input())", {}, dict(returncode=1, stderr_has=["EOFError"], timed_out=False)),
    # An infinite loop is killed at the wall-clock timeout, not before, not much after.
    ("while True: pass", dict(timeout=1.0), dict(timed_out=True, killed_by="timeout", duration=(1.0, 1.0 + SLACK))),
    # Output printed before a hang still comes back (stdout is unbuffered).
    ("print('started')\nwhile True: pass", dict(timeout=1.0), dict(timed_out=True, stdout="started\n")),
    # Printing forever: killed at the timeout, and the caller kept 100 bytes, not megabytes.
    ("while True: print('x')", dict(timeout=1.0, max_output=100),
     dict(timed_out=True, killed_by="timeout", stdout_has=["bytes cut ...]"], stdout_max=200)),
    # CPU limit below the timeout (the backstop if the caller dies): SIGXCPU after 1 s of CPU,
    # and a program that ignores SIGXCPU gets SIGKILL at the hard limit one second later.
    ("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass", dict(timeout=10.0, cpu_seconds=1),
     dict(returncode=-9, killed_by="cpu", timed_out=False)),
    # One huge allocation: RLIMIT_AS turns it into a MemoryError in the child.
    ("x = bytearray(2**34)", {}, dict(returncode=1, killed_by="memory", stderr_has=["MemoryError"])),
    # A list that grows until the limit: the same, after ~256 MiB.
    ("x = []\nwhile True: x.append(' ' * 2**20)", dict(timeout=10.0), dict(returncode=1, killed_by="memory")),
    # A fork bomb is refused at the first fork by the audit hook.
    ("import os\nwhile True: os.fork()", {}, dict(returncode=1, stderr_has=["sandbox: os.fork is refused"])),
    # subprocess cannot even be imported (its _posixsubprocess is what would bypass the hook).
    ("import subprocess\nsubprocess.run(['ls'])", {}, dict(returncode=1, stderr_has=["import _posixsubprocess is refused"])),
    # os.system is refused.
    ("import os\nos.system('ls')", {}, dict(returncode=1, stderr_has=["os.system is refused"])),
    # ctypes would be the way around every check of the hook: refused at import.
    ("import ctypes", {}, dict(returncode=1, stderr_has=["import ctypes is refused"])),
    # Creating a socket is refused, before any address is involved.
    ("import socket\nsocket.socket()", {}, dict(returncode=1, stderr_has=["socket.__new__ is refused"])),
    # Name lookups are refused too (no DNS leaks).
    ("import socket\nsocket.gethostbyname('example.com')", {}, dict(returncode=1, stderr_has=["is refused"])),
    # Writing inside the working folder works: files, folders, tempfile (TMPDIR is the folder).
    ("import os, tempfile\nopen('a.txt', 'w').write('hi')\nos.mkdir('d')\nos.rename('a.txt', 'd/b.txt')\n"
     "f = tempfile.NamedTemporaryFile(delete=False)\nprint(open('d/b.txt').read(), sorted(os.listdir('.')) == sorted(['d', os.path.basename(f.name)]))",
     {}, dict(returncode=0, stdout="hi True\n")),
    # A symlink out of the folder does not make writing through it legal (paths are resolved).
    ("import os\nos.symlink('/tmp', 'out')\nopen('out/sandbox-evil.txt', 'w')", {},
     dict(returncode=1, stderr_has=["writing outside the working folder is refused"])),
    # Changing directory does not either.
    ("import os\nos.chdir('/tmp')\nopen('sandbox-evil.txt', 'w')", {},
     dict(returncode=1, stderr_has=["writing outside the working folder is refused"])),
    # Swapping out the functions the hook relies on does not disarm it (it captured them).
    ("import os, builtins\nos.lstat = os.stat = None\nbuiltins.type = lambda x: int\nopen('/tmp/sandbox-evil.txt', 'w')", {},
     dict(returncode=1, stderr_has=["writing outside the working folder is refused"])),
]


@pytest.mark.parametrize("code, kwargs, want", CASES, ids=[c[0].replace("\n", "; ")[:48] for c in CASES])
def test_run(code, kwargs, want):
    r = run(code, **kwargs)
    for field in ("returncode", "stdout", "stderr", "timed_out", "killed_by"):
        if field in want:
            assert getattr(r, field) == want[field], (field, r)
    for text in want.get("stderr_has", []):
        assert text in r.stderr, r
    for text in want.get("stderr_lacks", []):
        assert text not in r.stderr, r
    for text in want.get("stdout_has", []):
        assert text in r.stdout, r
    if "stdout_max" in want:
        assert len(r.stdout) <= want["stdout_max"], r
    if "duration" in want:
        low, high = want["duration"]
        assert low <= r.duration <= high, r


def test_caller_is_untouched():
    # The limits are set in the child only: the caller's own are what they were.
    before = [resource.getrlimit(limit) for limit in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_CPU)]
    run("x = bytearray(2**34)")
    run("while True: pass", timeout=0.5)
    after = [resource.getrlimit(limit) for limit in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_CPU)]
    assert before == after


def test_writing_outside_is_refused_and_no_file_appears(tmp_path):
    # Absolute, parent-relative and home-relative paths, by open() and by os.open().
    name = f"sandbox-evil-{uuid.uuid4().hex}.txt"
    targets = [f"/tmp/{name}", f"{tmp_path}/{name}"]
    for path in targets + [f"../{name}"]:
        for write in ("open({p!r}, 'w')", "import os; os.open({p!r}, os.O_WRONLY | os.O_CREAT)"):
            r = run(write.format(p=path))
            assert r.returncode == 1 and "PermissionError" in r.stderr, r
    for path in targets:
        assert not os.path.exists(path)


def test_cwd_is_a_fresh_empty_folder_removed_afterwards():
    r = run("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\nprint(os.environ['HOME'] == os.getcwd())\n"
            "open('left-behind.txt', 'w').write('x')")
    cwd, listing, home = r.stdout.splitlines()
    assert (listing, home, r.returncode) == ("[]", "True", 0)
    assert not os.path.exists(cwd)
    assert run("import os; print(os.getcwd())").stdout.strip() != cwd  # a new one every run


def test_socket_to_localhost_is_refused():
    # A real listener on 127.0.0.1: the program must not reach it.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        server.settimeout(0.1)
        r = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')")
        assert r.returncode == 1 and "connected" not in r.stdout and "is refused" in r.stderr, r
        with pytest.raises(socket.timeout):
            server.accept()


def test_no_process_of_the_sandbox_survives():
    # The program names its uid and process group, then tries to fork: afterwards none of its
    # processes is alive (looked up in /proc: psutil is not a dependency).
    r = run("import os\nprint(os.getuid(), os.getpgrp(), flush=True)\nwhile True: os.fork()", timeout=2.0)
    uid, pgid = map(int, r.stdout.split())
    assert _live_pids(uid=uid if uid != os.getuid() else None, pgid=pgid) == []


# --- The OS layer alone (audit_hook=False): what still holds when the hook is bypassed. ---
# These need root (uid drop, network namespace); as another user only the rlimits apply.
needs_root = pytest.mark.skipif(not ROOT, reason="the uid drop and the network namespace need root")


@needs_root
def test_os_layer_runs_as_another_uid():
    # Not root, and a uid of its own: file permissions and RLIMIT_NPROC apply to it.
    r = run("import os\nprint(os.getuid(), os.getgid(), os.getgroups())", audit_hook=False)
    uid, gid, groups = r.stdout.split(maxsplit=2)
    assert int(uid) >= sandbox.UID_BASE and uid == gid and groups.strip() == "[]", r


@needs_root
def test_os_layer_contains_a_fork_bomb():
    # With forks allowed, RLIMIT_NPROC stops the bomb at 32 processes, the run ends within the
    # timeout, and no process of its uid or group is left behind.
    r = run("import os\nprint(os.getuid(), os.getpgrp(), flush=True)\nwhile True: os.fork()", timeout=3.0, audit_hook=False)
    assert "Resource temporarily unavailable" in r.stderr or r.timed_out, r
    assert r.duration < 3.0 + SLACK
    uid, pgid = map(int, r.stdout.split()[:2])
    assert _live_pids(uid=uid, pgid=pgid) == []


@needs_root
def test_os_layer_refuses_writes_to_root_owned_folders(tmp_path):
    # File permissions, not the hook: the run's uid owns nothing outside its folder.
    os.chmod(tmp_path, 0o755)  # readable and searchable by others, writable by root only
    name = f"sandbox-evil-{uuid.uuid4().hex}.txt"
    for path in (f"{tmp_path}/{name}", f"../{name}"):
        r = run(f"open({path!r}, 'w')", audit_hook=False)
        assert "Permission denied" in r.stderr, r
    assert not (tmp_path / name).exists()


@needs_root
def test_os_layer_has_no_network():
    # A network namespace of its own: only a loopback interface, which is down.
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare(CLONE_NEWNET) is not allowed here (no CAP_SYS_ADMIN?): only the hook refuses sockets")
    r = run("import socket\nprint(socket.if_nameindex())", audit_hook=False)
    assert r.stdout == "[(1, 'lo')]\n", r
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        r = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", audit_hook=False)
        assert "Network is unreachable" in r.stderr, r
