"""solvers.sandbox: each hostile program is stopped or refused, and the caller keeps running.

Timeouts here are 1 s and the bounds on durations are generous (a loaded 2-core machine can
take a second longer to start or kill a process), so the file takes ~10 s, not minutes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import types
import uuid

import pytest

from solvers import sandbox
from solvers.sandbox import run

ROOT = os.geteuid() == 0
NETNS = ROOT and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0
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
    # Threads work (seccomp refuses clone3 and processes, not threads), and so do the standard
    # library's computing modules, whose native parts are loaded before the program starts.
    ("import threading, concurrent.futures as cf\nt = threading.Thread(target=print, args=('t',))\nt.start(); t.join()\n"
     "with cf.ThreadPoolExecutor(4) as ex: print(sum(ex.map(abs, range(-5, 5))))\n"
     "import hashlib, decimal, statistics, datetime, uuid, csv, pickle, unicodedata, zlib, lzma, array, tempfile, shutil\n"
     "print(hashlib.sha256(b'').hexdigest()[:8], decimal.Decimal(1) / 8, unicodedata.name('é'))", {},
     dict(returncode=0, stdout="t\n25\ne3b0c442 0.125 LATIN SMALL LETTER E WITH ACUTE\n", stderr="")),
    # A fork bomb is refused at the first fork by the audit hook.
    ("import os\nwhile True: os.fork()", {}, dict(returncode=1, stderr_has=["sandbox: os.fork is refused"])),
    # subprocess cannot even be imported (its _posixsubprocess would fork and exec unaudited).
    ("import subprocess\nsubprocess.run(['ls'])", {}, dict(returncode=1, stderr_has=["import _posixsubprocess is refused"])),
    # os.system is refused.
    ("import os\nos.system('ls')", {}, dict(returncode=1, stderr_has=["os.system is refused"])),
    # ctypes would be the way around every check of the hook: refused at import.
    ("import ctypes", {}, dict(returncode=1, stderr_has=["import ctypes is refused"])),
    # The socket module cannot be imported: _socket is no allowed native module.
    ("import socket\nsocket.socket()", {}, dict(returncode=1, stderr_has=["import _socket is refused"])),
    # Nor can a program reach it through a module that imports it (no DNS leaks either).
    ("import urllib.request\nurllib.request.urlopen('http://example.com')", {}, dict(returncode=1, stderr_has=["import _socket is refused"])),
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
    # With forks allowed (no hook, no seccomp), RLIMIT_NPROC stops the bomb at 32 processes,
    # the run ends within the timeout, and no process of its uid or group is left behind.
    r = run("import os\nprint(os.getuid(), os.getpgrp(), flush=True)\nwhile True: os.fork()", timeout=3.0,
            audit_hook=False, seccomp=False)
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
        r = run(f"open({path!r}, 'w')", audit_hook=False, landlock=False)
        assert "Permission denied" in r.stderr, r
    assert not (tmp_path / name).exists()


@needs_root
def test_os_layer_has_no_network():
    # A network namespace of its own: only a loopback interface, which is down. (Landlock and
    # seccomp would refuse the socket before the namespace is asked: they are off here.)
    if not NETNS:
        pytest.skip("unshare(CLONE_NEWNET) is not allowed here (no CAP_SYS_ADMIN?)")
    alone = dict(audit_hook=False, landlock=False, seccomp=False)
    r = run("import socket\nprint(socket.if_nameindex())", **alone)
    assert r.stdout == "[(1, 'lo')]\n", r
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        r = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", **alone)
        assert "Network is unreachable" in r.stderr, r


# --- Escapes (issue 15), with the project's interpreter and the system one. ---
# Each program below got out of the sandbox, or could have, before these layers. Every test
# runs it with the interpreter the project runs on and with the system's, where there is one.
SYSTEM_PYTHON = "/usr/bin/python3"
PYTHONS = [pytest.param(sys.executable, id="project-python"),
           pytest.param(SYSTEM_PYTHON, id="system-python", marks=pytest.mark.skipif(
               not os.path.exists(SYSTEM_PYTHON), reason=f"{SYSTEM_PYTHON} is absent on this machine"))]


def _landlock_abi() -> int:
    """The kernel's Landlock ABI version, asked here directly (not through the sandbox); < 1: none."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # LANDLOCK_CREATE_RULESET_VERSION


LANDLOCK = _landlock_abi() >= 1
SECCOMP = (importlib.util.find_spec("pyseccomp") is not None and ctypes.util.find_library("seccomp") is not None
           and "Seccomp:" in open("/proc/self/status").read())
needs_landlock = pytest.mark.skipif(not LANDLOCK, reason="the kernel has no Landlock (or it is not enabled)")
needs_seccomp = pytest.mark.skipif(not SECCOMP, reason="pyseccomp is not installed (pip install .[sandbox])")


@pytest.fixture
def outside():
    """A world-writable folder outside the sandbox, as /tmp and /dev/shm are: file permissions
    (the uid drop) do not keep the program out of it, only the hook and Landlock do."""
    folder = tempfile.mkdtemp(prefix="sandbox-outside-", dir="/tmp")
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1; ``listener.reached()`` says whether anything connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)

    def reached():
        try:
            server.accept()[0].close()
            return True
        except socket.timeout:
            return False

    yield types.SimpleNamespace(port=server.getsockname()[1], reached=reached)
    server.close()


# The program: code run in a sub-interpreter is not audited. It tries to write outside,
# load ctypes and send bytes to 127.0.0.1; each step prints what happened.
SUBINTERPRETER = '''
import _xxsubinterpreters as si
i = si.create()
si.run_string(i, """
try:
    open({out!r} + '/outside.txt', 'w').write('out')
except Exception as e:
    print('write:', e)
try:
    import socket
    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'x')
except Exception as e:
    print('socket:', e)
""")
'''

# Layer settings for it: all of them; the Python layer alone; the OS layers alone; Landlock
# with the uid and network namespace but without seccomp (so that the sub-interpreter module
# can be loaded at all and its code really runs unaudited).
LAYER_SETTINGS = [
    pytest.param({}, id="all-layers"),
    pytest.param(dict(landlock=False, seccomp=False), id="python-layer-alone"),
    pytest.param(dict(audit_hook=False), id="os-layers-alone"),
    pytest.param(dict(audit_hook=False, seccomp=False), id="landlock-no-seccomp", marks=needs_landlock),
]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("layers", LAYER_SETTINGS)
def test_the_subinterpreter_program_writes_nothing_outside_and_opens_no_socket(python, layers, outside, listener):
    r = run(SUBINTERPRETER.format(out=outside, port=listener.port), python=python, **layers)
    assert os.listdir(outside) == [], r
    assert not listener.reached(), r
    if "audit_hook" not in layers:  # the hook refuses the import itself
        assert "import _xxsubinterpreters is refused" in r.stderr, r


# Native and other modules that run code where the audit hook cannot see it. A module this
# interpreter does not have at all ends in "No module named"; one it has in "is refused".
REFUSED_MODULES = [
    "_xxsubinterpreters", "_interpreters", "_xxinterpchannels", "_interpchannels", "_interpqueues",
    "concurrent.interpreters", "_testcapi", "_testinternalcapi", "_testmultiphase", "_testsinglephase",
    "_testbuffer", "_testimportmultiple", "_xxtestfuzz", "_ctypes", "ctypes", "_posixsubprocess",
    "_multiprocessing", "_posixshmem", "multiprocessing", "mmap", "_socket", "_ssl", "_sqlite3",
    "sqlite3", "resource", "fcntl", "termios", "readline", "_curses", "xxlimited", "_asyncio",
]


def _present(python: str, names: list[str]) -> set[str]:
    """Which of ``names`` the interpreter has (asked outside the sandbox)."""
    code = "import importlib.util as u, sys\nfor n in sys.argv[1:]:\n    try:\n        u.find_spec(n) and print(n)\n    except ImportError:\n        pass"
    out = subprocess.run([python, "-S", "-s", "-c", code, *names], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("python", PYTHONS)
def test_modules_that_escape_the_hook_are_refused(python):
    present = _present(python, REFUSED_MODULES)
    assert "_xxsubinterpreters" in present or "_interpreters" in present, present  # something to refuse
    program = "import sys\nfor name in %r:\n    try:\n        __import__(name)\n        print('imported', name)\n" \
              "    except ImportError as e:\n        print(name, e)\n" % REFUSED_MODULES
    r = run(program, python=python)
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert set(lines) == set(REFUSED_MODULES), r  # no "imported ..." line
    for name in REFUSED_MODULES:
        if name in present:
            assert "is refused" in lines[name], (name, lines[name])
        else:  # some are refused by name before they are looked for
            assert "is refused" in lines[name] or "No module named" in lines[name], (name, lines[name])


def _extension(name: str) -> str:
    return f"[f for d in sys.path if d.endswith('lib-dynload') for f in glob.glob(d + '/{name}.*.so')][0]"


# (program, run() keywords, what stderr must hold, what the layer is). Other ways to get native
# code, FIFOs or the hook's own state. OUT is the world-writable folder outside.
BYPASSES = [
    # Loading an extension past the import system: _imp's loaders are gone (python layer) ...
    ("import _imp, sys, glob, importlib.machinery as m\n_imp.create_dynamic(m.ModuleSpec('_ctypes', None, origin="
     + _extension("_ctypes") + "))", {}, "loading the native module _ctypes is refused", None),
    # ... and seccomp maps no new executable memory, hook or not (_testcapi: not loaded before).
    ("import _imp, sys, glob, importlib.machinery as m\n_imp.create_dynamic(m.ModuleSpec('_testcapi', None, origin="
     + _extension("_testcapi") + "))", dict(audit_hook=False), "failed to map segment", "seccomp"),
    # A fresh posix module from the builtin table (no audit event), with mkfifo back in it.
    ("import _imp, importlib.machinery as m\n_imp.create_builtin(m.ModuleSpec('posix', None)).mkfifo('f')", {},
     "loading the native module posix is refused", None),
    # A copy of _ctypes inside a package of the working folder: the name's last part is checked.
    ("import os, sys, glob\nso = " + _extension("_ctypes") + "\nos.mkdir('pkg')\nopen('pkg/__init__.py', 'w').close()\n"
     "open('pkg/' + os.path.basename(so), 'wb').write(open(so, 'rb').read())\nsys.path.insert(0, os.getcwd())\n"
     "import pkg._ctypes", {}, "import pkg._ctypes is refused", None),
    # FIFOs and device nodes raise no audit event: the functions are gone from os and posix ...
    ("import os\nos.mkfifo('f')", {}, "has no attribute 'mkfifo'", None),
    ("import posix, stat\nposix.mknod('f', 0o600 | stat.S_IFIFO)", {}, "has no attribute 'mknod'", None),
    # ... and the OS refuses them, inside the folder and out: seccomp (EPERM) and Landlock (EACCES).
    ("import os, stat\nos.mknod('f', 0o600 | stat.S_IFIFO)", dict(audit_hook=False, landlock=False), "Operation not permitted", "seccomp"),
    ("import os\nos.mkfifo(OUT + '/fifo')", dict(audit_hook=False, landlock=False), "Operation not permitted", "seccomp"),
    ("import os\nos.mkfifo('f')", dict(audit_hook=False, seccomp=False), "Permission denied", "landlock"),
    ("import os, stat\nos.mknod(OUT + '/fifo', 0o600 | stat.S_IFIFO)", dict(audit_hook=False, seccomp=False), "Permission denied", "landlock"),
    # Forks and execs: the hook refuses them, and without it seccomp and Landlock do.
    ("import os\nos.execv('/bin/sh', ['sh', '-c', 'touch ' + OUT + '/x'])", dict(audit_hook=False, landlock=False), "Operation not permitted", "seccomp"),
    ("import os\nos.execv('/bin/sh', ['sh', '-c', 'touch ' + OUT + '/x'])", dict(audit_hook=False, seccomp=False), "Permission denied", "landlock"),
    ("import os\nos.fork()", dict(audit_hook=False), "Operation not permitted", "seccomp"),
    # Writing outside without the hook: Landlock alone refuses it.
    ("open(OUT + '/x', 'w')", dict(audit_hook=False, seccomp=False), "Permission denied", "landlock"),
    # Reading outside the system's folders and its own: Landlock (/work is not among them).
    (f"open({os.path.abspath(__file__)!r}).read()", dict(audit_hook=False, seccomp=False), "Permission denied", "landlock"),
    # The ways to reach the hook's state: the gc's walks, tracing, profiling.
    ("import gc, sys\ngc.get_referrers(sys.audit)", {}, "gc.get_referrers is refused", None),
    ("import sys\nsys.settrace(lambda *a: None)", {}, "sys.settrace is refused", None),
    ("import sys\nsys.setprofile(lambda *a: None)", {}, "sys.setprofile is refused", None),
    # The hook's own frame, reached through a refusal's traceback: emptying what it holds
    # changes nothing (it holds only immutable things and looks up no global name).
    ("try:\n    open(OUT + '/x', 'w')\nexcept PermissionError as e:\n    tb = e.__traceback__\n"
     "    while tb.tb_next:\n        tb = tb.tb_next\n        for v in [*tb.tb_frame.f_locals.values(), *tb.tb_frame.f_globals.values()]:\n"
     "            try:\n                v.clear()\n            except Exception:\n                pass\n"
     "        tb.tb_frame.f_globals.clear()\nopen(OUT + '/x', 'w')", {}, "writing outside the working folder is refused", None),
]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("code, kwargs, want, layer", BYPASSES, ids=[f"{i}-{b[3] or 'python'}" for i, b in enumerate(BYPASSES)])
def test_bypasses_are_refused(python, code, kwargs, want, layer, outside):
    if layer == "seccomp" and not SECCOMP:
        pytest.skip("pyseccomp is not installed (pip install .[sandbox])")
    if layer == "landlock" and not LANDLOCK:
        pytest.skip("the kernel has no Landlock")
    r = run(f"OUT = {outside!r}\n" + code, python=python, **kwargs)
    assert r.returncode != 0 and want in r.stderr, r
    assert os.listdir(outside) == [], r


@pytest.mark.parametrize("python", PYTHONS)
def test_c_extensions_from_site_packages_are_refused(python):
    # The decision in the module docstring: a program that puts site-packages back on its path
    # still gets no native code from it (markupsafe falls back to its pure-Python escape).
    spec = importlib.util.find_spec("markupsafe._speedups")
    if spec is None:
        pytest.skip("markupsafe's C extension is not installed here")
    site = os.path.dirname(os.path.dirname(spec.origin))
    program = f"import sys\nsys.path.insert(0, {site!r})\nimport markupsafe\nimport markupsafe._speedups"
    # Landlock off: otherwise the site-packages of the project's venv are not even readable.
    r = run(program, python=python, landlock=False)
    assert "loading the native module markupsafe._speedups is refused" in r.stderr, r
    if SECCOMP:
        r = run(program, python=python, landlock=False, audit_hook=False)
        assert "failed to map segment" in r.stderr, r
    # With Landlock on, a venv's site-packages are not even readable (not among the read roots).
    if LANDLOCK:
        r = run(program, python=python)
        assert r.returncode == 1 and "No module named 'markupsafe'" in r.stderr, r
    # And pure-Python packages from there stay importable where readable (every layer holds them).
    r = run(f"import sys\nsys.path.insert(0, {site!r})\nimport markupsafe\nprint(markupsafe.escape('<'))", python=python, landlock=False)
    assert r.stdout == "&lt;\n", r


@pytest.mark.parametrize("python", PYTHONS)
def test_the_layers_this_machine_supports_are_on(python):
    # What this machine offers, found here without the sandbox's help; each must be on.
    got = sandbox.layers(python)
    want = {"rlimits": True, "audit_hook": True, "uid": ROOT, "network_namespace": NETNS,
            "landlock": LANDLOCK, "seccomp": SECCOMP}
    assert set(got) == set(want), got
    for layer, supported in want.items():
        assert got[layer].startswith("on") == supported, (layer, got[layer])
    # And each one can be switched off (the tests above rely on that).
    r = run("pass", python=python, audit_hook=False, landlock=False, seccomp=False)
    assert [r.layers[k].split(":")[0] for k in ("audit_hook", "landlock", "seccomp")] == ["off"] * 3, r.layers


@pytest.mark.skipif(not ROOT or not os.path.exists(SYSTEM_PYTHON), reason="needs root (to become nobody) and the system python")
@needs_landlock
@pytest.mark.parametrize("hook", [True, False], ids=["all-layers", "landlock-alone"])
def test_a_non_root_caller_is_held_by_landlock(hook, outside, listener):
    # The worst case: as a non-root caller there is no uid drop and no network namespace
    # (and no pyseccomp in the system python), so Landlock, with or without the hook, is what
    # keeps the sub-interpreter program in. The caller is the system python running as nobody.
    as_nobody = dict(user=65534, group=65534, extra_groups=[], cwd="/tmp")
    files = [os.path.abspath(sandbox.__file__), sandbox.CHILD]
    if subprocess.run(["test", "-r", files[0], "-a", "-r", files[1]], **as_nobody).returncode != 0:
        pytest.skip(f"nobody cannot read {files}")
    caller = ("import importlib.util, json, sys\n"
              f"spec = importlib.util.spec_from_file_location('sandbox', {os.path.abspath(sandbox.__file__)!r})\n"
              "sandbox = sys.modules['sandbox'] = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(sandbox)\n"
              f"r = sandbox.run(sys.stdin.read(), python={SYSTEM_PYTHON!r}, audit_hook={hook})\n"
              "print(json.dumps(r.layers)); print(r.stdout, r.stderr, file=sys.stderr)")
    done = subprocess.run([SYSTEM_PYTHON, "-S", "-c", caller], input=SUBINTERPRETER.format(out=outside, port=listener.port),
                          capture_output=True, text=True, timeout=60, **as_nobody)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["uid"].startswith("off") and got["landlock"].startswith("on"), got
    assert os.listdir(outside) == [], done.stderr
    assert not listener.reached(), done.stderr
