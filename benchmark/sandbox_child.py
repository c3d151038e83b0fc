"""The child side of the sandbox that runs a submitted method (``bench submit``; docs/design.md §2).

Started by :mod:`benchmark.sandbox` as ``python -m benchmark.sandbox_child`` in an empty working
directory with a scrubbed environment. It receives the algorithm's view (reference, factories,
train contexts, offline data, budget, seed) from its parent, imports the submitted file, trains,
and sends back the trained policy's **state dict** (tensors only). It never holds the oracle, the
evaluation contexts, the store or the domain cache: every sealed handle of the view (feedback
channel, sample meter, ``make_policy``/``make_scorer``/``transitions``, the simulator, the judge)
is a :class:`HostProxy` here that asks the parent, which answers only the calls on its list.

Before the submission is imported an audit hook (PEP 578; it cannot be removed) refuses opening
files outside the Python installation, the project's ``benchmark/`` sources, the submission and a
scratch directory; importing the benchmark's internals (``domains``, ``benchmark.runner``, the
store, the cache, ``sqlite3``, …); starting processes, sockets and ``ctypes``. Every refusal is
recorded and sent to the parent, which marks the cell failed.

Wire format: 8-byte little-endian length, then a blob. Parent → child blobs are pickles (the
parent is trusted); child → parent blobs are ``torch.save`` files that the parent loads with
``weights_only=True`` and that hold only tensors, numbers, strings and containers
(:func:`to_plain`), so nothing the child sends can run code in the parent.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

HEADER = struct.Struct("<Q")
MAX_MESSAGE = 8 << 30


def write_message(fh: BinaryIO, blob: bytes) -> None:
    fh.write(HEADER.pack(len(blob)))
    fh.write(blob)
    fh.flush()


def read_exact(fh: BinaryIO, n: int) -> bytes:
    """``n`` bytes (unbuffered pipes may return fewer per read); EOFError if the pipe closes first."""
    parts, got = [], 0
    while got < n:
        chunk = fh.read(n - got)
        if not chunk:
            raise EOFError("the other side of the sandbox closed the channel")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_message(fh: BinaryIO) -> bytes:
    (n,) = HEADER.unpack(read_exact(fh, HEADER.size))
    if n > MAX_MESSAGE:
        raise ValueError(f"a sandbox message of {n} bytes is over the limit")
    return read_exact(fh, n)


def encode_plain(obj: Any) -> bytes:
    """Child → parent: a ``torch.save`` blob of plain data (loadable with ``weights_only=True``)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def decode_plain(blob: bytes) -> Any:
    """Parent side: load a child's blob without running any code it could carry."""
    return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")


# ---------------------------------------------------------------------------------------------
# plain data: what may cross from the child to the parent
# ---------------------------------------------------------------------------------------------

PLAIN_SCALARS = (bool, int, float, str, type(None))


def to_plain(obj: Any, callbacks: dict[int, Callable] | None = None) -> Any:
    """Tensors, scalars and containers as they are; a :class:`~benchmark.api.Batch` as
    ``{"__batch__": state}``; a callable (when ``callbacks`` is given) as ``{"__callback__": id}``."""
    from benchmark.api import Batch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, PLAIN_SCALARS):
        return obj
    if isinstance(obj, Batch):
        return {"__batch__": to_plain(obj.state())}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(x, callbacks) for x in obj)
    if isinstance(obj, dict):
        return {str(k): to_plain(v, callbacks) for k, v in obj.items()}
    if callable(obj) and callbacks is not None:
        callbacks[id(obj)] = obj
        return {"__callback__": id(obj)}
    raise TypeError(f"a {type(obj).__name__} cannot be sent to the benchmark from a submitted method; send "
                    "tensors, numbers, strings, lists, dicts or Batches")


# ---------------------------------------------------------------------------------------------
# the host: RPC to the parent
# ---------------------------------------------------------------------------------------------

#: exception types the parent may ask the child to raise (an algorithm may catch these)
def _exception_types() -> dict[str, type[BaseException]]:
    from benchmark.api import BudgetExceeded, FeedbackBudgetExceeded

    return {"BudgetExceeded": BudgetExceeded, "FeedbackBudgetExceeded": FeedbackBudgetExceeded,
            "PermissionError": PermissionError, "ValueError": ValueError, "TypeError": TypeError,
            "RuntimeError": RuntimeError}


class Host:
    """The child's end of the channel: calls on sealed handles, progress notes, the result."""

    def __init__(self, rx: BinaryIO, tx: BinaryIO):
        self.rx, self.tx = rx, tx
        self.violations: list[str] = []
        self._sent = 0

    def send(self, *msg: Any) -> None:
        fresh = self.violations[self._sent:]
        self._sent = len(self.violations)
        write_message(self.tx, encode_plain((*msg, fresh)))

    def receive(self) -> tuple:
        return pickle.loads(read_message(self.rx))

    def call(self, handle: int, name: str, args: tuple, kwargs: dict) -> Any:
        callbacks: dict[int, Callable] = {}
        self.send("call", handle, name, to_plain(args, callbacks), to_plain(kwargs, callbacks))
        while True:
            msg = self.receive()
            if msg[0] == "reply":
                return msg[1]
            if msg[0] == "raise":
                raise _exception_types().get(msg[1], RuntimeError)(msg[2])
            if msg[0] == "callback":
                self._answer_callback(callbacks, msg[1], msg[2])

    def _answer_callback(self, callbacks: dict[int, Callable], cid: int, args: tuple) -> None:
        try:
            out = callbacks[cid](*args)
        except Exception as e:
            self.send("callback_error", f"{type(e).__name__}: {e}")
            return
        self.send("return", to_plain(out))


class HostProxy:
    """Stands in the child's vault for a sealed object of the parent: attribute reads and calls go
    to the parent, which allows only the calls on its list for that object."""

    __slots__ = ("_handle", "_host")

    def __init__(self, host: Host, handle: int):
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_handle", handle)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._host.call(self._handle, "__call__", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in ("budget", "used", "remaining"):  # the counters a channel or meter shows
            return self._host.call(self._handle, "__getattr__", (name,), {})
        host, handle = self._host, self._handle

        def method(*args: Any, **kwargs: Any) -> Any:
            return host.call(handle, name, args, kwargs)

        return method


class HostReporter:
    """Progress and curves: advances are forwarded (batched), curves travel with the result."""

    def __init__(self, host: Host):
        self.host = host
        self.pending = 0

    def advance(self, n: int = 1) -> None:
        self.pending += n
        if self.pending >= 10:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.host.send("advance", self.pending)
            self.pending = 0

    def log(self, step: int, metrics: Any) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# the guard: what the submission may not do
# ---------------------------------------------------------------------------------------------

DENIED_MODULES = ("domains", "baselines", "leaderboard", "benchmark.runner", "benchmark.store", "benchmark.cache",
                  "benchmark.evaluation", "benchmark.preparation", "benchmark.executors", "benchmark.cli",
                  "benchmark.sandbox", "benchmark.feedback", "benchmark.data", "benchmark.checks",
                  "benchmark.registry", "benchmark.submit", "sqlite3", "_sqlite3", "socket", "subprocess",
                  "multiprocessing", "ray", "submitit")
DENIED_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                 "os.kill", "os.killpg", "pty.spawn", "socket.connect", "socket.bind", "socket.getaddrinfo",
                 "sqlite3.connect", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
                 "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at")
WRITE_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
                "os.symlink", "os.truncate", "shutil.rmtree", "shutil.copyfile", "shutil.move")


def allowed_roots(submission: Path, scratch: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(read roots, write roots): the Python installation and the benchmark's sources may be read;
    only the scratch directory may be written."""
    import benchmark

    project_pkg = Path(benchmark.__file__).resolve().parent
    reads = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(project_pkg), str(submission.resolve()),
             str(scratch.resolve()), "/dev/null", "/dev/urandom", "/proc/self/", "/sys/devices/system/cpu",
             "/sys/fs/cgroup", "/etc/localtime", "/usr/share/zoneinfo", "/usr/lib", "/lib"}
    reads |= {str(Path(p).resolve()) for p in sys.path if p and "site-packages" in p}
    return tuple(sorted(reads)), (str(scratch.resolve()),)


def install_guard(host: Host, submission: Path, scratch: Path) -> None:
    """The audit hook (permanent for the process's life): refused events raise PermissionError and
    are recorded as violations."""
    reads, writes = allowed_roots(submission, scratch)

    def refuse(what: str) -> None:
        host.violations.append(what)
        raise PermissionError(f"the sandbox of a submitted method refuses: {what}")

    def under(path: Any, roots: tuple[str, ...]) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor
        p = os.path.abspath(os.fsdecode(path))
        real = os.path.realpath(p)
        return any(x == r or x.startswith(r.rstrip("/") + "/") or (r.endswith("/") and x.startswith(r))
                   for r in roots for x in {p, real})

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode = args[0], args[1]
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            writing = writing or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if path is not None and not under(path, writes if writing else reads + writes):
                refuse(f"open {os.fsdecode(path) if not isinstance(path, int) else path!r} "
                       f"({'write' if writing else 'read'})")
        elif event == "import":
            name = args[0]
            if any(name == m or name.startswith(m + ".") for m in DENIED_MODULES):
                refuse(f"import {name}")
        elif event in ("os.listdir", "os.scandir"):
            if args[0] is not None and not under(args[0], reads + writes):
                refuse(f"list directory {os.fsdecode(args[0])}")
        elif event.startswith(DENIED_EVENTS):
            refuse(f"{event} {args[0] if args else ''}".strip())
        elif event in WRITE_EVENTS and args and not under(args[0], writes):
            refuse(f"{event} {args[0]}")

    sys.addaudithook(hook)


def limit_memory(limit_bytes: int) -> None:
    """Cap the address space at what is mapped now plus ``limit_bytes``."""
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * resource.getpagesize()
    cap = mapped + int(limit_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def open_vault(host: Host, handles: list[int]) -> None:
    """Every handle of the view resolves, in this process, to a proxy of the parent's object."""
    from benchmark import seal

    seal._STRONG.clear()
    seal._WEAK.clear()
    for h in handles:
        seal._STRONG[h] = HostProxy(host, h)


def load_submission(source: bytes, path: Path, class_name: str) -> type:
    """Run the submitted source (read before the guard went up) as module ``prefbench_submission``."""
    import types

    module = types.ModuleType("prefbench_submission")
    module.__file__ = str(path)
    sys.modules["prefbench_submission"] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return getattr(module, class_name)


def describe(cls: type) -> dict:
    """What the parent needs to resolve cells of a submitted class (plain data only)."""
    import dataclasses

    cfg = cls.Config()
    fields = []
    for f in dataclasses.fields(cls.Config):
        fields.append({"name": f.name, "default": to_plain(getattr(cfg, f.name)),
                       "type": getattr(f.type, "__name__", str(f.type))})
    return {"name": getattr(cls, "name", None), "requires": sorted(cls.requires), "fields": fields,
            "paper": getattr(cls, "paper", ""), "trains": bool(getattr(cls, "trains", True))}


def train(host: Host, init: dict, cls: type) -> dict:
    from benchmark.api import Policy, RunContext

    cfg = cls.Config(**init["config"])
    generator = torch.Generator()
    generator.set_state(init["generator_state"])
    reporter = HostReporter(host)
    ctx = RunContext(domain=init["instance"], budget=init["budget"], generator=generator,
                     device=torch.device("cpu"), seed=init["seed"], reporter=reporter, meter=init["meter"])
    policy = cls().train(ctx, cfg)
    reporter.flush()
    if not isinstance(policy, Policy):
        raise TypeError(f"train returned {type(policy).__name__}, not a Policy")
    return {"state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
            "policy_class": f"{type(policy).__module__}.{type(policy).__qualname__}",
            "steps_done": ctx.steps_done, "curves": to_plain(ctx.curves), "summary": to_plain(ctx.summary)}


def _failure(e: BaseException) -> tuple[str, str]:
    text = f"{type(e).__name__}: {e}"
    memory = isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("can't allocate memory", "not enough memory", "Cannot allocate memory")))
    return ("memory" if memory else "error"), text


def main() -> None:
    rx = os.fdopen(os.dup(0), "rb")
    tx = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the submission's prints go to stderr, never into the channel
    host = Host(rx, tx)
    (init,) = host.receive()
    torch.set_num_threads(init["threads"])
    open_vault(host, init["handles"])
    submission, scratch = Path(init["submission"]), Path.cwd()
    import benchmark.objectives
    import benchmark.steps
    import benchmark.training  # noqa: F401  (what a submission may use, loaded before the guard)

    source = submission.read_bytes()
    install_guard(host, submission, scratch)
    limit_memory(init["memory_bytes"])
    try:
        cls = load_submission(source, submission, init["class_name"])
        out = describe(cls) if init["mode"] == "describe" else train(host, init, cls)
    except BaseException as e:
        kind, text = _failure(e)
        host.send(kind, text, traceback.format_exc()[-4000:])
        return
    host.send("result", out)


if __name__ == "__main__":
    main()
