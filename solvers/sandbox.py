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

The child (solvers/sandbox_child.py) sets up layers, each detected at run time; ``layers()``
says which are on for an interpreter, and why each other one is off. The OS layers hold
whatever runs in the process (C code, sub-interpreters, a bypassed hook included):

- ``rlimits`` (everywhere): ``RLIMIT_AS`` = ``memory_mb``, ``RLIMIT_CPU`` (SIGXCPU at
  ``cpu_seconds``, SIGKILL a second later), ``RLIMIT_NPROC`` = 32, ``RLIMIT_FSIZE`` = 16 MiB,
  ``RLIMIT_NOFILE`` = 64, no core files; ``PR_SET_NO_NEW_PRIVS``; SIGKILL when the caller dies
  (``PR_SET_PDEATHSIG``). The child leads its own session: at ``timeout`` the parent kills the
  group and, as root, every process of the run's uid.
- ``uid`` (caller is root): the child drops to a uid of its own, ``UID_BASE + pid``, so file
  permissions and ``RLIMIT_NPROC`` (which exempts root) apply, and concurrent runs do not share
  one budget. Where the interpreter lives somewhere that uid cannot read (pyenv under /root),
  its prefix is bind-mounted into the run's folder in a private mount namespace first.
- ``network_namespace`` (CAP_SYS_ADMIN): a namespace whose only interface, lo, is down.
- ``landlock`` (Linux >= 5.13 with Landlock enabled): writes only beneath the working folder;
  reads only beneath the interpreter, /usr, /lib*, /bin, /etc, a few /dev files and the run's
  folder (a read-only view of the system, without mounts); no FIFO, socket or device node
  created anywhere, nothing executed; from ABI 4 no TCP bind or connect; from ABI 6 no signal
  or abstract unix socket out of the sandbox.
- ``seccomp`` (pyseccomp installed, ``pip install .[sandbox]``, and libseccomp.so.2): the
  parent builds a filter, the child loads it. Refused: socket, fork, exec, mknod (FIFOs and
  devices), ptrace, namespaces, mounts, io_uring, bpf and more (``DENIED_SYSCALLS``), and any
  new executable memory, so no native code can be loaded once the allowed native modules are.

The Python layer (``audit_hook``; a speed bump that works with any interpreter and caller, not
a wall: it runs inside the program's interpreter) refuses, with ``PermissionError`` or
``ImportError``: sockets, processes and signals to others; writing, creating, removing or
renaming outside the working folder (symlinks resolved); creating a sub-interpreter
(``cpython.PyInterpreterState_New``); tracing, profiling and the gc's object walks (ways to
reach and disarm the hook). Imports go by an allow-list: a native module (built in or in
lib-dynload) is importable only if named in ``sandbox_child.ALLOWED_NATIVE``, so
``_xxsubinterpreters``, ``_interpreters``, ``_testcapi``, ``_ctypes``, ``_posixsubprocess``,
``_socket``, ``mmap`` and the like are refused, as are ``ctypes``, ``concurrent.interpreters``,
``multiprocessing`` and ``sqlite3``. ``os.mkfifo`` and ``os.mknod`` (no audit event) are removed.

C extensions from site-packages are refused. The child runs ``-S -s``, so site-packages is off
``sys.path``, but a program may add it back. Programs are stdlib-only by contract, and native
code is exactly what the hook cannot see into (cffi, numpy's buffers, psutil's kill). So the
allowed native modules are imported before the program starts, then ``_imp.create_dynamic`` and
``_imp.create_builtin`` are replaced by a refusal, and where seccomp is on, no new executable
memory can be mapped. Pure-Python modules the program can reach (its own files, or
site-packages where Landlock lets it read) stay importable, under every layer.

Not enforced: reading what the run's uid may read where Landlock is off; disk space used by
many files of 16 MiB; memory summed over threads beyond the per-process ``RLIMIT_AS``.

Programs run with ``-S -s -P`` (no site-packages, no user site, cwd not on ``sys.path``) in a
from-scratch environment (stdin /dev/null; HOME, TMPDIR and cwd a fresh folder removed
afterwards), with ``PYTHONHASHSEED=0``: a reward that re-runs a program sees the same set and
dict-of-str order the generated trace showed. The parent keeps the first and last bytes of
each stream (``max_output`` in all), so a program printing forever costs the caller no memory.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

UID_BASE = 1_500_000_000  # run uid = UID_BASE + child pid: unique among live runs, below 2**31
NPROC = 32  # processes and threads of the run's uid; a fork bomb stops at 32
FSIZE = 16 * 2**20  # bytes per file written
NOFILE = 64  # open file descriptors
GRACE = 1.0  # seconds to drain pipes after the end before giving up on them
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
# Refused by the seccomp filter (EPERM), where the kernel has them: networking, new processes
# and programs, special files, debugging other processes, namespaces and mounts, and the
# kernel interfaces that act outside seccomp's or Landlock's sight (io_uring, bpf, ...).
DENIED_SYSCALLS = (
    "socket", "socketpair", "fork", "vfork", "execve", "execveat", "mknod", "mknodat",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
    "pidfd_send_signal", "migrate_pages", "move_pages", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "personality", "modify_ldt", "iopl", "ioperm", "open_by_handle_at", "name_to_handle_at",
    "fanotify_init", "shmat", "process_madvise", "swapon", "swapoff", "reboot", "acct",
    "quotactl", "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup", "uselib",
)


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
    layers: dict = field(default_factory=dict, compare=False)  # layer -> "on..." or "off: why" (see layers())


def run(
    code: str,
    *,
    timeout: float = 5.0,
    memory_mb: int = 256,
    cpu_seconds: float | None = None,
    max_output: int = 4096,
    python: str = sys.executable,
    audit_hook: bool = True,
    landlock: bool = True,
    seccomp: bool = True,
) -> Result:
    """Run ``code`` as a Python program in a fresh sandboxed process (see the module docstring).

    ``cpu_seconds`` defaults to ``ceil(timeout) + 1``: a backstop behind the wall clock.
    ``max_output`` bytes are kept of each stream: the first half and the last half, with a
    marker between them saying how many bytes were cut. ``audit_hook``, ``landlock`` and
    ``seccomp`` can switch a layer off (where it is on at all); that exists so that tests can
    show each layer holds on its own. ``Result.layers`` says which were on for this run.

    >>> r = run("print('x' * 100)", max_output=20)
    >>> r.stdout
    'xxxxxxxxxx\\n[... 81 bytes cut ...]\\nxxxxxxxxx\\n'
    """
    cpu = max(1, math.ceil(cpu_seconds if cpu_seconds is not None else math.ceil(timeout) + 1))
    with tempfile.TemporaryDirectory(prefix="sandbox-", ignore_cleanup_errors=True) as tmp:
        os.chmod(tmp, 0o711)  # the run's uid may pass through to work/
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
        bpf, why = _seccomp_filter() if seccomp else (None, "not asked for")
        report_r, report_w = os.pipe()
        config = {"tmp": tmp, "parent": os.getpid(), "uid_base": UID_BASE, "hook": audit_hook,
                  "limits": [memory_mb * 2**20, cpu, NPROC, FSIZE, NOFILE], "landlock": landlock,
                  "seccomp": bpf, "seccomp_why": why, "report": report_w}
        argv = [python, "-S", "-s", "-P", "-u", "-X", "utf8", CHILD, json.dumps(config)]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, close_fds=True, pass_fds=(report_w,))
        except BaseException:
            os.close(report_r)
            raise
        finally:
            os.close(report_w)
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
            layers = _read_report(report_r)
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
    return Result(out.text(), err.text(), rc, timed_out, killed_by, round(end - start, 3), layers)


def layers(python: str = sys.executable) -> dict[str, str]:
    """Which layers a run with ``python`` gets on this machine: layer -> "on" (with a detail)
    or "off: why". Layers: rlimits, uid, network_namespace, landlock, seccomp, audit_hook."""
    r = run("pass", python=python)
    if not r.layers:
        raise RuntimeError(f"sandbox: the child of {python} reported no layers: {r.stderr.strip()[-500:]}")
    return r.layers


def _read_report(fd: int) -> dict:
    """The child's JSON report of its layers, written before the program started; {} if none."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass  # a grandchild holds the write end (it cannot: the child closes it first)
    finally:
        os.close(fd)
    try:
        return json.loads(data)
    except ValueError:
        return {}


@functools.cache
def _seccomp_filter() -> tuple[str | None, str]:
    """The seccomp filter as BPF (hex) and "", or None and why there is none. Built here, where
    site-packages are importable, with libseccomp through pyseccomp (an optional dependency);
    the child only loads it."""
    try:
        import pyseccomp
    except (ImportError, OSError) as e:  # OSError: libseccomp.so.2 missing
        return None, f"pyseccomp or libseccomp is not installed ({e})"
    eperm = pyseccomp.ERRNO(errno.EPERM)
    filt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            filt.add_rule(eperm, name)
        except OSError:
            pass  # not a system call of this architecture
    masked = pyseccomp.MASKED_EQ
    filt.add_rule(eperm, "clone", pyseccomp.Arg(0, masked, 0x00010000, 0))  # without CLONE_THREAD: a process
    filt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")  # flags out of reach; glibc falls back to clone
    for name in ("mmap", "mprotect", "pkey_mprotect"):  # no new executable memory: PROT_EXEC = 4
        filt.add_rule(eperm, name, pyseccomp.Arg(2, masked, 4, 4))
    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        return f.read().hex(), ""


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
