"""A warm ``bench`` for tables of one-line errors: one server process imports the CLI once, then
forks a fresh child per command, which sets the command's environment and working directory, points
its stdout and stderr at files and runs :func:`benchmark.cli.main` as ``bench`` would, exiting with
its real status (the exit handlers run; the interpreter's teardown of its modules is skipped: in a
forked child it touches every inherited page, 2 s with torch loaded). Only the interpreter's
start and the imports are shared: a bad-input case takes 0.3 s instead of 4-7 s as
``python -m benchmark.cli``. Whatever an import reads from the environment (``PYTHONPATH``
plugins) must still use a real subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SERVER = r"""
import atexit, importlib, json, os, signal, sys, time
import benchmark.cli as cli
import torch  # what the commands import lazily, imported once here; the registries stay unscanned
import benchmark.executors, benchmark.export, benchmark.runner, leaderboard.tables
from benchmark import registry
for target in [*registry._BUILTIN_DOMAINS.values(), *registry._BUILTIN_ALGORITHMS.values()]:
    importlib.import_module(target.partition(":")[0])
print("ready", flush=True)

for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.dup2(os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.argv = ["bench", *req["args"]]
        code = 0
        try:
            cli.main()
        except SystemExit as e:  # reported as the interpreter would: an int, None (0) or a message (1)
            code = 0 if e.code is None else e.code
            if not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # without the interpreter's teardown of ~3,500 modules (2 s here)
    deadline = time.monotonic() + req["timeout"]
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        done = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(done[1])}), flush=True)
"""


class WarmBench:
    """``bench`` commands through one forking server; :meth:`run` returns a CompletedProcess."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**env, "COLUMNS": "300"})
        assert self.proc.stdout.readline() == "ready\n", "the warm bench server did not start"
        self.tmp = Path(tempfile.mkdtemp(prefix="warm-bench-"))

    def run(self, *args: str, env: dict[str, str], cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        out, err = self.tmp / "stdout", self.tmp / "stderr"
        req = {"args": [str(a) for a in args], "env": env, "cwd": str(cwd or Path.cwd()), "stdout": str(out),
               "stderr": str(err), "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the warm bench server died"
        code = json.loads(line)["code"]
        return subprocess.CompletedProcess(["bench", *req["args"]], code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


def start(env: dict[str, str] | None = None) -> WarmBench:
    return WarmBench(dict(os.environ if env is None else env))
