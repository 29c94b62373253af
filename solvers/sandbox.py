"""Run an untrusted Python program in a separate, limited process and capture what it prints.

Program-aided traces have a model write ``<program>`` blocks; generation runs each one here and
puts what it printed into an ``<output>`` block, and rewards re-run the last program. The
programs come from a model, so they can loop forever, eat memory, fork, write files or open
sockets by accident or by sampling noise. ``run`` keeps all of that away from the caller:

>>> r = run("print(sum(range(10)))")
>>> r.stdout, r.returncode, r.timed_out, r.killed_by
('45\\n', 0, False, None)
>>> run("while True: pass", timeout=0.5).killed_by
'timeout'
>>> run("open('/etc/evil', 'w')").stderr.splitlines()[-1]
"PermissionError: sandbox: writing outside the working folder is refused: '/etc/evil'"

What is enforced, and by whom. Two layers; only the first is a wall.

The operating system (holds whatever the program does, ctypes and C extensions included):

- wall clock: the child leads its own session (``start_new_session=True``); at ``timeout`` the
  parent SIGKILLs the whole process group and, when it runs as root, every process of the run's
  uid (which also catches a child that left the group with ``setsid``).
- CPU: ``RLIMIT_CPU`` (SIGXCPU at ``cpu_seconds``, SIGKILL one second later). It is the backstop
  if the parent dies; the child also gets SIGKILL from ``PR_SET_PDEATHSIG`` when it does.
- memory: ``RLIMIT_AS`` = ``memory_mb`` per process; Python then raises ``MemoryError``.
- processes: ``RLIMIT_NPROC`` = 32. The kernel counts every process *and thread* of the real
  uid and exempts root, so as root the limit alone would not bite. When the caller is root the
  child therefore drops to a uid of its own, ``UID_BASE + pid`` (not the shared ``nobody``:
  with one shared uid, concurrent sandboxes would share one budget of 32, one fork bomb would
  starve the others, and "kill every process of the uid" would kill the neighbours' programs).
  As a non-root caller the limit counts the caller's own processes, so a program may be unable
  to start even one thread when the caller already runs 32; that errs on the safe side.
- files: the uid drop makes file permissions apply (root-owned files are read-only to it);
  ``RLIMIT_FSIZE`` = 16 MiB per file, ``RLIMIT_NOFILE`` = 64, ``RLIMIT_CORE`` = 0.
- network: as root, a new network namespace (``unshare(CLONE_NEWNET)``: ``os.unshare`` on
  3.12+, libc through ctypes on 3.11) that holds only a loopback interface that is down, so
  even 127.0.0.1 is unreachable. Needs CAP_SYS_ADMIN; without it (non-root, or a container
  that drops the capability) the audit hook below is all there is.
- privileges: ``PR_SET_NO_NEW_PRIVS``, so an exec'd set-uid binary gains nothing.
- input and environment: stdin is /dev/null (reads get EOF), the environment is built from
  scratch, cwd, HOME and TMPDIR are a fresh empty temporary folder removed afterwards.
- output: the parent reads both pipes as they fill and keeps only the first and last bytes
  (``max_output`` in all), so a program printing forever costs the caller no memory.

A ``sys.addaudithook`` hook in the child (a speed bump, not a wall: it runs inside the
program's own interpreter) refuses, with ``PermissionError``: every ``socket.*`` event (create,
connect, bind, DNS); ``subprocess.Popen``, ``os.system``, ``os.fork``/``forkpty``, ``os.exec*``,
``os.posix_spawn*``, signals to other processes; opening a file for writing, or creating,
removing, renaming, linking or chmod-ing a path, outside the working folder (paths resolved
with ``realpath``, so a symlink out of the folder does not help); importing ``ctypes``,
``_ctypes`` and ``_posixsubprocess`` (the ways around the events above); ``gc.get_objects`` and
friends and re-assigning a function's ``__code__``/``__defaults__`` (the ways to reach and
disarm the hook itself). A determined program can still get past it (a check-then-open race
between threads, a C extension it finds on disk, a CPython bug), which is why the limits that
matter are the OS ones above.

Not enforced at all: reading files the run's uid may read (when it is root's pid-derived uid
that is what "other" may read; as a non-root caller, everything the caller may read), disk
space used by many files of 16 MiB, writes to world-writable folders (/tmp, /dev/shm) if the
hook is bypassed, memory summed over threads beyond the per-process ``RLIMIT_AS``, and
anything at all beyond the audit hook when the caller is neither root nor able to unshare.

When the caller is root but the interpreter lives somewhere the run's uid cannot read (here:
pyenv under /root, mode 0700), the child first bind-mounts the interpreter's prefix into its
temporary folder in a private mount namespace, so that imports keep working after the drop.
Where even that is impossible, the child keeps root's uid (and says so in ``stderr``).

Programs run with ``-S -s -P`` (no site-packages: standard library only; no user site; the cwd
is not on ``sys.path``) in a from-scratch environment, which isolates them as much as ``-I``
would, but lets ``PYTHONHASHSEED=0`` through (``-I`` ignores it): a reward that re-runs a
program then sees the same set and dict-of-str order the generated trace showed.
"""

from __future__ import annotations

import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

UID_BASE = 1_500_000_000  # run uid = UID_BASE + child pid: unique among live runs, below 2**31
NPROC = 32  # processes and threads of the run's uid; a fork bomb stops at 32
FSIZE = 16 * 2**20  # bytes per file written
NOFILE = 64  # open file descriptors
GRACE = 1.0  # seconds to drain pipes after the end before giving up on them


@dataclass(frozen=True)
class Result:
    """What one program did. ``killed_by`` is ``"timeout"`` (wall clock), ``"cpu"``
    (RLIMIT_CPU), ``"memory"`` (ended by an uncaught MemoryError), ``"signal"`` (some other
    signal) or None (it ended by itself)."""

    stdout: str
    stderr: str
    returncode: int
    timed_out: bool
    killed_by: str | None
    duration: float  # seconds of wall clock from start to end (or to the kill)


def run(
    code: str,
    *,
    timeout: float = 5.0,
    memory_mb: int = 256,
    cpu_seconds: float | None = None,
    max_output: int = 4096,
    python: str = sys.executable,
    audit_hook: bool = True,
) -> Result:
    """Run ``code`` as a Python program in a fresh sandboxed process (see the module docstring).

    ``cpu_seconds`` defaults to ``ceil(timeout) + 1``: a backstop behind the wall clock.
    ``max_output`` bytes are kept of each stream: the first half and the last half, with a
    marker between them saying how many bytes were cut. ``audit_hook=False`` leaves only the OS
    limits; it exists so that tests can show those hold on their own.

    >>> r = run("print('x' * 100)", max_output=20)
    >>> r.stdout
    'xxxxxxxxxx\\n[... 81 bytes cut ...]\\nxxxxxxxxx\\n'
    """
    cpu = max(1, math.ceil(cpu_seconds if cpu_seconds is not None else math.ceil(timeout) + 1))
    with tempfile.TemporaryDirectory(prefix="sandbox-", ignore_cleanup_errors=True) as tmp:
        os.chmod(tmp, 0o711)  # the run's uid may pass through to work/ and read program.py
        work = os.path.join(tmp, "work")
        os.mkdir(work, 0o700)
        program = os.path.join(tmp, "program.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(code)
        os.chmod(program, 0o644)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": work,
            "TMPDIR": work,
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            # glibc reserves 64 MiB of address space per malloc arena, one per thread: three
            # threads would use up a 256 MiB RLIMIT_AS before allocating anything.
            "MALLOC_ARENA_MAX": "2",
        }
        limits = [memory_mb * 2**20, cpu, NPROC, FSIZE, NOFILE]
        argv = [python, "-S", "-s", "-P", "-u", "-X", "utf8", "-c", _BOOTSTRAP, tmp,
                str(os.getpid()), str(UID_BASE), str(int(audit_hook)), *map(str, limits)]
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
        uid = UID_BASE + proc.pid if os.geteuid() == 0 else None
        out, err = _Capped(max_output), _Capped(max_output)
        try:
            timed_out, end = _collect(proc, uid, out, err, start + timeout)
        finally:
            _kill(proc, uid)  # also when the caller is interrupted (KeyboardInterrupt)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.stdout.close()
            proc.stderr.close()
    rc = proc.returncode
    if timed_out:
        killed_by = "timeout"
    elif rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and usage.ru_utime + usage.ru_stime >= cpu - 0.1):
        killed_by = "cpu"
    elif err.last_line().startswith("MemoryError"):
        killed_by = "memory"
    elif rc < 0:
        killed_by = "signal"
    else:
        killed_by = None
    return Result(out.text(), err.text(), rc, timed_out, killed_by, round(end - start, 3))


class _Capped:
    """The first and last bytes of a stream, whatever its length; memory stays O(limit)."""

    def __init__(self, limit: int):
        self.limit, self.total = limit, 0
        self.head, self.tail = bytearray(), bytearray()
        self.keep_tail = max(limit, 256)  # a little more, to find a final "MemoryError" line

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.limit:
            self.head += data[: self.limit - len(self.head)]
        self.tail += data[-self.keep_tail :]
        del self.tail[: -self.keep_tail]

    def text(self) -> str:
        if self.total <= self.limit:
            return self.head.decode("utf-8", "replace")
        t = self.limit // 2
        h = self.limit - t
        head = self.head[:h].decode("utf-8", "replace")
        tail = self.tail[len(self.tail) - t :].decode("utf-8", "replace")
        return f"{head}\n[... {self.total - h - t} bytes cut ...]\n{tail}"

    def last_line(self) -> str:
        lines = self.tail.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""


def _collect(proc, uid, out, err, deadline):
    """Read both pipes until the program ends (or is killed at ``deadline``).

    One thread, no reader threads: nothing is left blocked on a pipe that an escaped
    grandchild holds open. Returns (timed_out, end time)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    timed_out, end = False, None
    while True:
        now = time.monotonic()
        if end is None and _exited(proc.pid):
            end = now
            _kill(proc, uid)  # leftovers holding the pipes open go with the program
        if end is None and now >= deadline:
            end, timed_out = now, True
            _kill(proc, uid)
        if end is not None and (not sel.get_map() or now >= end + GRACE):
            break  # past GRACE only a process we cannot kill (non-root, left its group) writes
        if not sel.get_map():  # the program closed both pipes but runs on
            time.sleep(0.005)
            continue
        for key, _ in sel.select(0.05 if end is None else 0.01):
            data = os.read(key.fd, 65536)
            if data:
                key.data.add(data)
            else:
                sel.unregister(key.fileobj)
    sel.close()
    return timed_out, end


def _exited(pid: int) -> bool:
    """Has the child ended? Leaves it unreaped (WNOWAIT), so that its pid, which is also the
    process group id, cannot be reused by another process before ``_kill``."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill(proc, uid) -> None:
    """SIGKILL the program's process group and, as root, every live process of its uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None:
        return
    for _ in range(100):  # each sweep kills all it sees; a fork bomb is capped at NPROC
        pids = _live_pids_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _live_pids_of(uid: int) -> list[int]:
    """Pids whose real uid is ``uid`` and that are not zombies (zombies cannot run, and a
    container's init may never reap them)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip().startswith(("Z", "X")):
            pids.append(int(name))
    return pids


# The child's first code, run with -c. argv: tmp, parent pid, uid base, hook flag, limits.
# Order matters: namespaces, mounts and the uid drop need root, so they come first; the hook
# comes last, since it would refuse the ctypes calls that the steps before it make.
_BOOTSTRAP = r'''
import os, sys, resource, builtins, linecache, traceback, types
view = None  # where the interpreter's prefix is mounted, if it had to be
tmp, parent, uid_base, hook = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
memory, cpu, nproc, fsize, nofile = map(int, sys.argv[5:10])
work, program = os.path.join(tmp, "work"), os.path.join(tmp, "program.py")
source = open(program, encoding="utf-8").read()
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
except Exception:
    libc = None


def unshare(flags):
    if hasattr(os, "unshare"):
        os.unshare(flags)
    elif libc is None or libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno() if libc else 0, "unshare failed")


def readable_by(uid, path):
    os.setegid(uid); os.seteuid(uid)
    try:
        os.listdir(path)
        return True
    except OSError:
        return False
    finally:
        os.seteuid(0); os.setegid(0)


def remount_interpreter():
    # Bind the interpreter's prefix (say /root/.pyenv/versions/3.11.7, unreadable past /root)
    # onto tmp/python in a private mount namespace and point sys.path there.
    unshare(0x00020000)  # CLONE_NEWNS
    if libc.mount(b"none", b"/", None, 16384 | (1 << 18), None) != 0:  # MS_REC | MS_PRIVATE
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    global view
    view = os.path.join(tmp, "python")
    os.mkdir(view, 0o755)
    if libc.mount(sys.base_prefix.encode(), view.encode(), None, 4096 | 16384, None) != 0:  # MS_BIND | MS_REC
        raise OSError(ctypes.get_errno(), "mount --rbind " + sys.base_prefix)
    def moved(path):
        return view + path[len(sys.base_prefix):] if path.startswith(sys.base_prefix) else path
    sys.path[:] = map(moved, sys.path)
    sys.path_importer_cache.clear()
    for module in list(sys.modules.values()):  # packages imported already (encodings, ...)
        if isinstance(getattr(module, "__path__", None), list):
            module.__path__[:] = map(moved, module.__path__)
        if isinstance(getattr(module, "__file__", None), str):
            module.__file__ = moved(module.__file__)


if os.geteuid() == 0:
    uid = uid_base + os.getpid()
    os.setgroups([])
    try:
        unshare(0x40000000)  # CLONE_NEWNET: a namespace whose only interface, lo, is down
    except OSError:
        pass  # silently: stderr is the program's. The audit hook still refuses sockets.
    try:
        os.chown(work, uid, uid)
        stdlib = os.path.dirname(os.__file__)
        if not readable_by(uid, stdlib):
            remount_interpreter()
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except Exception as e:
        os.seteuid(0)
        print(f"sandbox: still root, could not drop to uid {uid} ({e!r})", file=sys.stderr)
if libc is not None:
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL (after the uid change, which clears it)
if os.getppid() != parent:
    os._exit(1)  # the parent died before PDEATHSIG was armed
for limit, value in [(resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                     (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize),
                     (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)]:
    resource.setrlimit(limit, value if isinstance(value, tuple) else (value, value))
for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
    del sys.modules[name]  # so that `import ctypes` fires the import event again
del libc
sys.dont_write_bytecode = True


def install_hook(root):
    # A closure over strings and C functions captured now: the program can rebind os.lstat,
    # builtins.type or pathlib's methods, and the hook still uses the originals.
    refused = {"os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
               "subprocess.Popen", "pty.spawn", "os.startfile", "gc.get_objects",
               "gc.get_referrers", "gc.get_referents", "os.killpg"}
    refused_modules = {"ctypes", "_ctypes", "_posixsubprocess"}
    # event -> (indexes of its path arguments, indexes of its dir_fd arguments)
    path_events = {"os.mkdir": ((0,), (2,)), "os.rmdir": ((0,), (1,)), "os.remove": ((0,), (1,)),
                   "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)),
                   "os.symlink": ((1,), (2,)), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
                   "os.utime": ((0,), (3,)), "os.truncate": ((0,), ()), "os.setxattr": ((0,), ()),
                   "os.removexattr": ((0,), ())}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    import posix, stat, pathlib
    lstat, readlink, getcwd, getpid, is_link = posix.lstat, posix.readlink, posix.getcwd, posix.getpid, stat.S_ISLNK
    type_, str_, int_, bytes_, refuse = type, str, int, bytes, PermissionError
    Path, path_fspath, path_str = pathlib.PosixPath, pathlib.PurePath.__fspath__, pathlib.PurePath.__str__

    def resolve(path):
        # os.path.realpath, written again with the captured functions only.
        pending = (path if path.startswith("/") else getcwd() + "/" + path).split("/")[::-1]
        done, links = "", 0
        while pending:
            part = pending.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                done = done.rpartition("/")[0]
                continue
            candidate = done + "/" + part
            try:
                mode = lstat(candidate).st_mode
            except OSError:
                done = candidate
                continue
            if is_link(mode):
                links += 1
                if links > 40:
                    raise refuse("sandbox: too many symbolic links")
                target = readlink(candidate)
                pending.extend(target.split("/")[::-1])
                if target.startswith("/"):
                    done = ""
            else:
                done = candidate
        return done or "/"

    def check_path(path, absolute_only=False):
        t = type_(path)
        if t is int_:
            return  # an fd: it was checked when it was opened
        if t is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        elif t is Path and t.__fspath__ is path_fspath and t.__str__ is path_str:
            path = str_(path)
        elif t is not str_:
            # other os.PathLike objects may answer differently when open() asks again
            raise refuse(f"sandbox: writing through a {t.__name__} path is refused")
        if absolute_only and not path.startswith("/"):
            # os.open's audit event does not carry dir_fd, so a relative path cannot be placed
            raise refuse(f"sandbox: os.open for writing needs an absolute path: {path!r}")
        full = resolve(path)
        if full != root and not full.startswith(root + "/"):
            raise refuse(f"sandbox: writing outside the working folder is refused: {path!r}")

    def audit(event, args):
        if event in refused or event.startswith(("socket.", "ctypes.")):
            raise refuse(f"sandbox: {event} is refused")
        if event == "import" and args[0].partition(".")[0] in refused_modules:
            raise refuse(f"sandbox: import {args[0]} is refused")
        if event == "open":
            path, mode, flags = args
            if flags & write_flags or (mode is not None and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)):
                check_path(path, absolute_only=mode is None)
        elif event in path_events:
            paths, dir_fds = path_events[event]
            for i in dir_fds:
                if args[i] is not None and args[i] != -1:  # -1: no dir_fd given
                    raise refuse(f"sandbox: {event} with dir_fd is refused")
            for i in paths:
                check_path(args[i])
        elif event == "os.kill" and args[0] != getpid():
            raise refuse("sandbox: signals to other processes are refused")
        elif event == "object.__setattr__" and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
            raise refuse(f"sandbox: assigning {args[1]} is refused")

    sys.addaudithook(audit)


if hook:
    install_hook(os.path.realpath(work))
# The program runs as __main__ under the name "<program>"; linecache gets its source so that
# tracebacks show the lines, with the same text on every run (no temporary path in them).
main = types.ModuleType("__main__")
main.__builtins__ = builtins
sys.modules["__main__"] = main
sys.argv = ["<program>"]
linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
try:
    code = compile(source, "<program>", "exec")
except SyntaxError as e:  # IndentationError included
    sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
    sys.exit(1)
try:
    exec(code, main.__dict__)
except SystemExit:
    raise
except BaseException as e:
    main.__dict__.clear()  # free what the program held (a MemoryError leaves no room to print)
    try:
        # Without the sandbox's own frames ("<string>": this bootstrap and its audit hook), and
        # with the interpreter's real paths, so that the text is the same on every run.
        report = traceback.TracebackException(type(e), e, e.__traceback__.tb_next)
        frames = [f for f in report.stack if f.filename != "<string>"]
        for f in frames:
            if view and f.filename.startswith(view):
                f.line  # read the source line through the mount before renaming
                f.filename = sys.base_prefix + f.filename[len(view):]
        report.stack = traceback.StackSummary.from_list(frames)
        sys.stderr.write("".join(report.format()))
    except MemoryError:
        os.write(2, f"{type(e).__name__}: {e}\n".encode())
    sys.exit(1)
'''
