"""The sandbox's child process: sets up each layer, then runs the untrusted program.

solvers.sandbox.run starts this file as a script (``python -S -s -P ... sandbox_child.py
CONFIG``), so it imports nothing but the standard library and must run on any CPython >= 3.10.
Order matters: namespaces, mounts and the uid drop need root, so they come first; native
modules are loaded before seccomp forbids new executable memory; Landlock and seccomp come
before the Python layer, whose audit hook would refuse the ctypes calls they need. All setup
happens inside functions, so that nothing it used (ctypes above all) stays reachable from the
program through this module's globals. One file because it runs alone, as a script, before
the program: it can import nothing of the project.
"""

import builtins
import json
import linecache
import os
import sys
import traceback
import types

# Native (C) modules a program may import: the ones the standard library's computing modules
# need. Everything native that is not here is refused, among them sub-interpreters
# (_xxsubinterpreters, _interpreters, ...), _testcapi and friends, ctypes, _posixsubprocess,
# _multiprocessing, _socket, _ssl, _sqlite3, mmap, fcntl, resource, termios and readline.
ALLOWED_NATIVE = frozenset("""
    _abc _ast _bisect _blake2 _bz2 _codecs _codecs_cn _codecs_hk _codecs_iso2022 _codecs_jp
    _codecs_kr _codecs_tw _collections _contextvars _csv _datetime _decimal _elementtree
    _functools _hashlib _heapq _io _json _locale _lzma _md5 _multibytecodec _opcode _operator
    _pickle _queue _random _sha1 _sha2 _sha256 _sha3 _sha512 _signal _sre _stat _statistics
    _string _struct _symtable _thread _tokenize _tracemalloc _typing _uuid _warnings _weakref
    _zoneinfo array atexit binascii builtins cmath errno faulthandler gc grp itertools marshal
    math posix pwd pyexpat select sys time unicodedata zlib
""".split())
# Pure-Python modules refused by name: they exist to run code where the hook cannot see it.
REFUSED_PYTHON = frozenset({"ctypes", "concurrent.interpreters", "multiprocessing", "sqlite3"})

# Landlock (linux/landlock.h)
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
WORK_RIGHTS = (FS_READ_FILE | FS_READ_DIR | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE
               | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SYM | FS_REFER | FS_TRUNCATE)
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446


def main() -> None:
    config = json.loads(sys.argv[1])
    with open(os.path.join(config["tmp"], "program.py"), encoding="utf-8") as f:
        source = f.read()
    layers = {}  # layer -> "on" or "off: why"; sent to the parent through config["report"]
    view = set_up_os(config, layers)
    if config["hook"]:
        set_up_python(os.path.realpath(os.path.join(config["tmp"], "work")))
        layers["audit_hook"] = "on"
    else:
        layers["audit_hook"] = "off: not asked for"
    os.write(config["report"], json.dumps(layers).encode())
    os.close(config["report"])
    run_program(source, view)


def set_up_os(config, layers):
    """Every OS layer; returns where the interpreter's prefix is mounted (or None)."""
    import resource
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
    except (ImportError, OSError) as e:  # an interpreter built without ctypes
        ctypes = libc = None
        no_ctypes = f"off: ctypes is not available ({e})"
    tmp, work = config["tmp"], os.path.join(config["tmp"], "work")
    view = None
    if os.geteuid() == 0:
        uid = config["uid_base"] + os.getpid()
        os.setgroups([])
        try:
            unshare(libc, 0x40000000)  # CLONE_NEWNET: a namespace whose only interface, lo, is down
            layers["network_namespace"] = "on"
        except OSError as e:
            layers["network_namespace"] = f"off: unshare(CLONE_NEWNET) failed: {e}"
        try:
            os.chown(work, uid, uid)
            if not readable_by(uid, os.path.dirname(os.__file__)):
                view = remount_interpreter(libc, tmp)
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            layers["uid"] = f"on: {uid}"
        except Exception as e:
            os.seteuid(0)
            layers["uid"] = f"off: could not drop to uid {uid}: {e!r}"
            print(f"sandbox: still root, could not drop to uid {uid} ({e!r})", file=sys.stderr)
    else:
        layers["network_namespace"] = layers["uid"] = "off: the caller is not root"
    if libc is not None:
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS (Landlock and seccomp need it as non-root)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL (after the uid change, which clears it)
    if os.getppid() != config["parent"]:
        os._exit(1)  # the parent died before PDEATHSIG was armed
    memory, cpu, nproc, fsize, nofile = config["limits"]
    for limit, value in [(resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                         (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize),
                         (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)]:
        resource.setrlimit(limit, value if isinstance(value, tuple) else (value, value))
    layers["rlimits"] = "on"
    preload_native()  # before seccomp, which refuses executable mappings from then on
    if not config["landlock"]:
        layers["landlock"] = "off: not asked for"
    else:
        layers["landlock"] = landlock(libc, ctypes, work, read_roots(tmp)) if libc else no_ctypes
    if config["seccomp"] is None:
        layers["seccomp"] = "off: " + config["seccomp_why"]
    else:
        layers["seccomp"] = seccomp(libc, ctypes, bytes.fromhex(config["seccomp"])) if libc else no_ctypes
    for name in [m for m in sys.modules if m.partition(".")[0] in ("ctypes", "_ctypes", "resource")]:
        del sys.modules[name]  # so that `import ctypes` fires the import event again
    return view


def unshare(libc, flags):
    if hasattr(os, "unshare"):  # 3.12+
        os.unshare(flags)
    elif libc is None:
        raise OSError(0, "unshare needs ctypes on Python < 3.12")
    elif libc.unshare(flags) != 0:
        import ctypes
        raise OSError(ctypes.get_errno(), "unshare failed")


def readable_by(uid, path):
    os.setegid(uid)
    os.seteuid(uid)
    try:
        os.listdir(path)
        return True
    except OSError:
        return False
    finally:
        os.seteuid(0)
        os.setegid(0)


def remount_interpreter(libc, tmp):
    """Bind the interpreter's prefix (say /root/.pyenv/versions/3.11.7, unreadable past /root)
    onto tmp/python in a private mount namespace and point sys.path there."""
    import ctypes  # reached only when libc was loaded through it
    unshare(libc, 0x00020000)  # CLONE_NEWNS
    if libc.mount(b"none", b"/", None, 16384 | (1 << 18), None) != 0:  # MS_REC | MS_PRIVATE
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
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
    return view


def native_modules():
    """Every native module this interpreter has: built in, or a shared object in lib-dynload."""
    import importlib.machinery
    names = set(sys.builtin_module_names)
    for folder in sys.path:
        if os.path.basename(folder) == "lib-dynload" and os.path.isdir(folder):
            for file in os.listdir(folder):
                for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                    if file.endswith(suffix):
                        names.add(file[: -len(suffix)])
    return names


def preload_native():
    """Import every allowed native module now. Afterwards seccomp (where active) refuses new
    executable memory and the Python layer removes _imp's loaders, so these are all there is."""
    for name in sorted(ALLOWED_NATIVE & native_modules()):
        try:
            __import__(name)
        except ImportError:
            pass


def read_roots(tmp):
    """What the program may read: the interpreter, the system's libraries and settings, its
    own folder (which holds the interpreter's mounted prefix when it had to be mounted)."""
    roots = {tmp, "/usr", "/lib", "/lib32", "/lib64", "/bin", "/etc", "/dev/null", "/dev/zero",
             "/dev/urandom", "/dev/random", "/sys/devices/system/cpu", f"/proc/{os.getpid()}"}
    for prefix in (sys.base_prefix, sys.base_exec_prefix):  # not sys.prefix: a venv's site-packages
        roots.add(os.path.realpath(prefix))
    return sorted(root for root in roots if os.path.exists(root))


def landlock(libc, ctypes, work, roots):
    """Writes only beneath work; reads only beneath ``roots`` and work; no FIFOs, sockets or
    device nodes created anywhere; nothing executed; no TCP (ABI 4+); no signals or abstract
    unix sockets out of the sandbox (ABI 6+). Returns the layer's state."""
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return f"off: the kernel has no Landlock (errno {ctypes.get_errno()})"
    fs = FS_BY_ABI[max(v for v in FS_BY_ABI if v <= abi)]

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Ruleset(fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)  # TCP bind+connect; unix+signal
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"off: landlock_create_ruleset failed (errno {ctypes.get_errno()})"
    try:
        for path, rights in [(root, FS_READ_FILE | FS_READ_DIR) for root in roots] + [(work, WORK_RIGHTS)]:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not os.path.isdir(path):
                    rights &= FILE_RIGHTS
                rule = PathBeneath(rights & fs, fd)
                if libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
                    return f"off: landlock_add_rule {path} failed (errno {ctypes.get_errno()})"
            finally:
                os.close(fd)
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            return f"off: landlock_restrict_self failed (errno {ctypes.get_errno()})"
    finally:
        os.close(ruleset)
    return f"on: ABI {abi}"


def seccomp(libc, ctypes, bpf):
    """Load the filter the parent built (solvers.sandbox._seccomp_filter) into this process."""

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    n = len(bpf) // ctypes.sizeof(Filter)
    instructions = (Filter * n).from_buffer_copy(bpf)
    program = Program(n, instructions)
    if libc.prctl(22, 2, ctypes.byref(program), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        return f"off: prctl(PR_SET_SECCOMP) failed (errno {ctypes.get_errno()})"
    return f"on: {n} instructions"


def set_up_python(root):
    """The Python layer: a speed bump that works with any interpreter and caller, not a wall
    (a program can find ways around it; the OS layers are what hold then).

    - The audit hook (install_hook) refuses events and imports.
    - _imp.create_dynamic and _imp.create_builtin are replaced by a refusal: no native module
      beyond the ones loaded already can be created (the hook never hears of create_builtin),
      which is what keeps C extensions from site-packages, or copied into the folder, out.
    - os.mkfifo and os.mknod, which raise no audit event, are removed from os and posix.
    """
    import _imp
    import posix
    native = frozenset(native_modules())
    install_hook(root, native)

    def create(spec, *args):  # holds no reference to the functions it replaces
        raise ImportError(f"sandbox: loading the native module {spec.name} is refused")

    _imp.create_dynamic = _imp.create_builtin = create
    for module, name in [(os, "mkfifo"), (os, "mknod"), (posix, "mkfifo"), (posix, "mknod")]:
        if hasattr(module, name):
            delattr(module, name)


def install_hook(root, native):
    # A closure over strings, frozensets and C functions captured now: the program can rebind
    # os.lstat, builtins.type or pathlib's methods, and the hook still uses the originals. It
    # looks up no global or builtin name when it runs, and holds nothing mutable, since its
    # frames are reachable through the traceback of each refusal.
    import pathlib
    import posix
    import stat
    from types import MappingProxyType

    refused = frozenset({
        "os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
        "subprocess.Popen", "pty.spawn", "os.startfile", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "os.killpg", "sys.settrace", "sys.setprofile", "sys._current_frames",
        "sys._current_exceptions", "cpython.PyInterpreterState_New", "mmap.__new__",
        "sqlite3.connect", "sqlite3.enable_load_extension", "sqlite3.load_extension"})
    refused_native = native - ALLOWED_NATIVE
    # event -> (indexes of its path arguments, indexes of its dir_fd arguments)
    path_events = MappingProxyType({
        "os.mkdir": ((0,), (2,)), "os.rmdir": ((0,), (1,)), "os.remove": ((0,), (1,)),
        "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
        "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)),
        "os.truncate": ((0,), ()), "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ())})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    lstat, readlink, getcwd, getpid, is_link = posix.lstat, posix.readlink, posix.getcwd, posix.getpid, stat.S_ISLNK
    type_, str_, int_, bytes_, refuse, refuse_import = type, str, int, bytes, PermissionError, ImportError
    contains = str.__contains__
    refused_python = REFUSED_PYTHON
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

    def check_import(name):
        if type_(name) is not str_:
            raise refuse_import("sandbox: import of a non-str name is refused")
        parts = name.split(".")
        # The top and the last part: a copied extension must keep its init function's name,
        # which is its last part (PyInit__ctypes), so pkg._ctypes is refused as well.
        if (parts[0] in refused_native or parts[-1] in refused_native or name in refused_python
                or parts[0] in refused_python):
            raise refuse_import(f"sandbox: import {name} is refused")

    def audit(event, args):
        if event in refused or event.startswith(("socket.", "ctypes.")):
            raise refuse(f"sandbox: {event} is refused")
        if event == "import":
            check_import(args[0])
        elif event == "open":
            path, mode, flags = args
            if type_(flags) is not int_ or (mode is not None and type_(mode) is not str_):
                raise refuse("sandbox: open with unusual argument types is refused")
            if flags & write_flags or (mode is not None and (contains(mode, "w") or contains(mode, "a")
                                                             or contains(mode, "x") or contains(mode, "+"))):
                check_path(path, absolute_only=mode is None)
        elif event in path_events:
            paths, dir_fds = path_events[event]
            for i in dir_fds:
                if args[i] is not None and args[i] != -1:  # -1: no dir_fd given
                    raise refuse(f"sandbox: {event} with dir_fd is refused")
            for i in paths:
                check_path(args[i])
        elif event == "os.kill" and (type_(args[0]) is not int_ or args[0] != getpid()):
            raise refuse("sandbox: signals to other processes are refused")
        elif event == "object.__setattr__":
            if type_(args[1]) is not str_ or args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
                raise refuse(f"sandbox: assigning {args[1]!r} is refused")

    sys.addaudithook(audit)


def run_program(source, view):
    """Run the program as __main__ under the name "<program>"; linecache gets its source so that
    tracebacks show the lines, with the same text on every run (no temporary path in them)."""
    sys.dont_write_bytecode = True
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
            # Without the sandbox's own frames (this file and its audit hook), and with the
            # interpreter's real paths, so that the text is the same on every run.
            report = traceback.TracebackException(type(e), e, e.__traceback__.tb_next)
            frames = [f for f in report.stack if f.filename != __file__]
            for f in frames:
                if view and f.filename.startswith(view):
                    f.line  # read the source line through the mount before renaming
                    f.filename = sys.base_prefix + f.filename[len(view):]
            report.stack = traceback.StackSummary.from_list(frames)
            sys.stderr.write("".join(report.format()))
        except MemoryError:
            os.write(2, f"{type(e).__name__}: {e}\n".encode())
        sys.exit(1)


if __name__ == "__main__":
    main()
