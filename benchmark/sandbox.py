"""The parent side of the sandbox for submitted methods (``bench submit``; docs/design.md §2).

A submitted file never runs in a process that holds the oracle. :func:`train_in_sandbox` starts
:mod:`benchmark.sandbox_child` as a fresh interpreter (not a fork: nothing of this process's memory
is inherited) in an empty scratch directory, with a scrubbed environment (no ``PREFBENCH_*``, no
paths to the store or the cache), a CPU-time limit (``RLIMIT_CPU``), a memory limit (the child caps
its address space) and a wall-time limit (enforced here). It sends the algorithm's view and then
serves the child's calls on sealed handles — **only** those on :data:`ALLOWED` for the handle's
object (the feedback channel's ``compare``/``rate``/``rank``, the meter's ``charge``, the
factories, the simulator's ``rollout``, the judge's ``score``/``compare``); anything else is a
violation. The child's messages are loaded with ``torch.load(weights_only=True)``: plain data
only, so a submission cannot run code here.

The trained policy comes back as a state dict and is loaded into a fresh ``make_policy()``: a
submitted method returns a policy of the domain's own family (its architecture, fine-tuned).

Threat model: this closes the runtime routes to the answers (files, environment, the parent's
objects, the store, the cache, the handles' other methods). It cannot stop a method from
recomputing a deterministic oracle from the benchmark's public code; an official board must
prepare its domains with a private seed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.api import Batch, Policy, RunContext
from benchmark.errors import CellFailed
from benchmark.sandbox_child import decode_plain, read_message, write_message

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed training run."""

    wall_s: float = 3600.0
    """Wall-clock seconds before the child is killed."""
    cpu_s: float | None = None
    """CPU seconds (all threads) before the kernel stops the child (default: wall_s × threads)."""
    memory_gb: float = 8.0
    """Memory the child may map beyond what the interpreter and torch map at start, in GiB."""


class SandboxViolation(CellFailed):
    """A submitted method tried something the sandbox refuses (the cell is failed, with the list)."""


def allowed_calls() -> dict[type, tuple[frozenset[str], frozenset[str]]]:
    """(methods, readable attributes) a child may use on each kind of sealed object."""
    from benchmark.feedback import RaterChannel
    from benchmark.policies.control import Simulator
    from benchmark.seal import CountingJudge, SampleMeter

    return {
        RaterChannel: (frozenset({"compare", "rate", "rank"}), frozenset({"budget", "used", "remaining"})),
        SampleMeter: (frozenset({"charge"}), frozenset({"budget", "used"})),
        Simulator: (frozenset({"rollout"}), frozenset()),
        CountingJudge: (frozenset({"score", "compare"}), frozenset()),
    }


def view_handles(ctx: RunContext) -> tuple[dict[int, str], Any, list[int]]:
    """The handles a child may use (handle → role), the view it is sent (with the judge sealed), and
    the handles sealed here (released when the child is done)."""
    import dataclasses

    from benchmark.policies.control import SealedSimulator
    from benchmark.seal import SealedCall, SealedFeedback, SealedJudge, seal

    inst = ctx.domain
    roles: dict[int, str] = {}
    for name in ("make_policy", "make_scorer", "transitions"):
        call = getattr(inst, name)
        if isinstance(call, SealedCall):
            roles[call._handle] = "call"
    if isinstance(inst.feedback, SealedFeedback):
        roles[inst.feedback._handle] = "object"
    if ctx.meter is not None:
        roles[ctx.meter] = "object"
    for m in inst.reference.modules():
        if isinstance(getattr(m, "simulator", None), SealedSimulator):
            roles[m.simulator._handle] = "object"
    judge, owned = None, []
    if inst.judge is not None:
        owned.append(seal(inst.judge))
        roles[owned[-1]] = "object"
        judge = SealedJudge(owned[-1])
    return roles, dataclasses.replace(inst, judge=judge), owned


class Channel:
    """This process's end of a child's pipes, with the wall-clock deadline."""

    def __init__(self, proc: subprocess.Popen, deadline: float):
        self.proc, self.deadline = proc, deadline
        self.violations: list[str] = []

    def send(self, *msg: Any) -> None:
        write_message(self.proc.stdin, pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))  # type: ignore[arg-type]

    def receive(self) -> tuple:
        left = self.deadline - time.monotonic()
        ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
        if not ready:
            raise TimeoutError
        msg = decode_plain(read_message(self.proc.stdout))  # type: ignore[arg-type]
        if not isinstance(msg, tuple) or not msg or not isinstance(msg[-1], list):
            raise CellFailed("the submitted method's process sent a malformed message")
        self.violations += [str(v) for v in msg[-1]]
        return msg[:-1]


def from_plain(obj: Any, channel: Channel) -> Any:
    """Rebuild what a child sent: ``{"__batch__": ...}`` → Batch, ``{"__callback__": id}`` → a
    function that asks the child (a policy's action function during a rollout)."""
    if isinstance(obj, dict):
        if set(obj) == {"__batch__"}:
            state = obj["__batch__"]
            return Batch.from_state({"tensors": state.get("tensors", {}), "meta": state.get("meta", {})})
        if set(obj) == {"__callback__"}:
            return _remote_function(int(obj["__callback__"]), channel)
        return {k: from_plain(v, channel) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(x, channel) for x in obj)
    return obj


def _remote_function(cid: int, channel: Channel) -> Any:
    def call(*args: Any) -> Any:
        channel.send("callback", cid, args)
        while True:
            msg = channel.receive()
            if msg[0] == "return":
                return from_plain(msg[1], channel)
            if msg[0] == "callback_error":
                raise CellFailed(f"the submitted method's function raised {msg[1]}")
            if msg[0] != "advance":
                raise CellFailed(f"the submitted method's process sent {msg[0]!r} while answering a callback")

    return call


def dispatch(roles: dict[int, str], handle: Any, name: Any, args: tuple, kwargs: dict) -> Any:
    """Perform one allowed call on a sealed object; anything else raises PermissionError."""
    from benchmark.seal import opened

    if not isinstance(handle, int) or handle not in roles or not isinstance(name, str):
        raise PermissionError(f"handle {handle!r} was not given to this cell")
    obj = opened(handle)
    if roles[handle] == "call":
        if name != "__call__":
            raise PermissionError(f"{name!r} is not allowed on a factory (call it)")
        return obj(*args, **kwargs)
    for kind, (methods, attrs) in allowed_calls().items():
        if isinstance(obj, kind):
            if name == "__getattr__" and len(args) == 1 and args[0] in attrs:
                return getattr(obj, args[0])
            if name in methods:
                return getattr(obj, name)(*args, **kwargs)
            break
    raise PermissionError(f"{name!r} is not allowed on {type(obj).__name__}")


def serve(channel: Channel, roles: dict[int, str], ctx: RunContext) -> dict:
    """Answer the child's calls until it sends its result; returns it (or raises CellFailed)."""
    while True:
        msg = channel.receive()
        kind = msg[0]
        if kind == "call":
            try:
                out = dispatch(roles, msg[1], msg[2], from_plain(msg[3], channel), from_plain(msg[4], channel))
            except PermissionError as e:
                channel.violations.append(f"call {msg[2]!r} on handle {msg[1]!r} ({e})")
                channel.send("raise", "PermissionError", str(e))
            except (CellFailed, TimeoutError, EOFError):
                raise
            except Exception as e:  # the channel's own errors (over budget, bad shapes) go back to the method
                channel.send("raise", type(e).__name__, str(e))
            else:
                channel.send("reply", out)
        elif kind == "advance":
            ctx.reporter.advance(int(msg[1]))
        elif kind == "result":
            return msg[1]
        elif kind in ("error", "memory"):
            raise _child_failure(kind, msg[1], msg[2])
        else:
            raise CellFailed(f"the submitted method's process sent an unknown message {kind!r}")


def _child_failure(kind: str, text: str, child_tb: str) -> CellFailed:
    err = CellFailed(f"the submitted method ran out of its memory limit: {text}" if kind == "memory"
                     else f"the submitted method raised {text}")
    err.add_note("traceback in the sandbox:\n" + child_tb)
    return err


def _child_env(threads: int, scratch: str) -> dict[str, str]:
    """The child's whole environment: nothing of this process's (no PREFBENCH_*, no store path)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8",
            "PYTHONPATH": str(PROJECT_ROOT), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads)}


def cpu_seconds(limits: Limits, threads: int) -> int:
    """The child's CPU-time limit (``RLIMIT_CPU``): ``cpu_s``, or the wall time × threads."""
    return int(limits.cpu_s if limits.cpu_s is not None else limits.wall_s * threads) + 1


def start_child(limits: Limits, threads: int, scratch: str) -> subprocess.Popen:
    cpu = cpu_seconds(limits, threads)

    def limit_cpu() -> None:  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))

    return subprocess.Popen([sys.executable, "-m", "benchmark.sandbox_child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=None, cwd=scratch, env=_child_env(threads, scratch),
                            preexec_fn=limit_cpu, start_new_session=True, bufsize=0)


def run_child(init: dict, limits: Limits, roles: dict[int, str], ctx: RunContext | None) -> dict:
    """Start a child, send ``init``, serve it, and return its result; every way it can end badly
    (violation, crash, limit, exception) is a CellFailed with the reason."""
    threads = int(init["threads"])
    with tempfile.TemporaryDirectory(prefix="prefbench-sandbox-") as scratch:
        proc = start_child(limits, threads, scratch)
        channel = Channel(proc, time.monotonic() + limits.wall_s)
        failure: BaseException | None = None
        result: dict | None = None
        try:
            channel.send(dict(init, memory_bytes=int(limits.memory_gb * 2**30)))
            result = serve(channel, roles, ctx) if ctx is not None else _describe_result(channel)
        except TimeoutError:
            failure = CellFailed(f"the submitted method ran past its wall-time limit of {limits.wall_s:g} s")
        except (EOFError, BrokenPipeError):
            failure = CellFailed(_death_reason(proc, cpu_seconds(limits, threads)))
        except CellFailed as e:
            failure = e
        finally:
            _stop(proc)
        if channel.violations:
            shown = "; ".join(channel.violations[:3])
            more = f" (and {len(channel.violations) - 3} more)" if len(channel.violations) > 3 else ""
            err = SandboxViolation(f"sandbox violation: the submitted method tried to {shown}{more}")
            err.add_note("every refused attempt:\n" + "\n".join(f"- {v}" for v in channel.violations))
            raise err
        if failure is not None:
            raise failure
        return result  # type: ignore[return-value]


def _describe_result(channel: Channel) -> dict:
    msg = channel.receive()
    if msg[0] == "result":
        return msg[1]
    if msg[0] in ("error", "memory"):
        raise _child_failure(msg[0], msg[1], msg[2])
    raise CellFailed(f"the submitted method's process sent {msg[0]!r} while being described")


def _death_reason(proc: subprocess.Popen, cpu: int) -> str:
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return "the submitted method's process stopped answering"
    if code == -signal.SIGXCPU:  # RLIMIT_CPU's soft limit
        return f"the submitted method ran past its CPU-time limit of {cpu} s"
    return f"the submitted method's process died (exit status {code}), e.g. out of memory or a crash"


def _stop(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            stream.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def describe_submission(path: Path, class_name: str, limits: Limits) -> dict:
    """Import the file in a sandbox and return its class's name, config fields and requirements."""
    init = {"mode": "describe", "submission": str(Path(path).resolve()), "class_name": class_name,
            "threads": 1, "handles": []}
    return run_child(init, limits, {}, None)


def train_in_sandbox(path: Path, class_name: str, ctx: RunContext, cfg: dict, limits: Limits) -> Policy:
    """Train the submitted class in a sandbox on ``ctx``'s view; returns the trained policy (a
    ``make_policy()`` with the child's parameters), with ``ctx``'s steps, curves and summary set."""
    from benchmark.seal import release

    roles, instance, owned = view_handles(ctx)
    init = {"mode": "train", "submission": str(Path(path).resolve()), "class_name": class_name,
            "threads": torch.get_num_threads(), "handles": sorted(roles), "instance": instance,
            "budget": ctx.budget, "seed": ctx.seed, "meter": ctx.meter, "config": cfg,
            "generator_state": ctx.generator.get_state()}
    try:
        result = run_child(init, limits, roles, ctx)
    finally:
        release(owned)
    return _adopt(result, ctx)


def _adopt(result: dict, ctx: RunContext) -> Policy:
    policy = ctx.domain.make_policy()
    cls = f"{type(policy).__module__}.{type(policy).__qualname__}"
    if result.get("policy_class") != cls:
        raise CellFailed(f"a submitted method must return a policy of the domain's family ({cls}, from "
                         f"ctx.domain.make_policy()), not {result.get('policy_class')}")
    try:
        policy.load_state_dict(result["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        raise CellFailed(f"the returned policy's parameters do not fit make_policy(): {e}") from None
    ctx.steps_done = min(int(result.get("steps_done", 0)), ctx.budget.steps)
    for k, pts in dict(result.get("curves", {})).items():
        ctx.curves[str(k)] = [(int(s), float(v)) for s, v in pts]
    ctx.summary.update({str(k): float(v) for k, v in dict(result.get("summary", {})).items()})
    return policy


__all__ = ["Limits", "SandboxViolation", "describe_submission", "train_in_sandbox"]
