"""A submitted method that tries every route to the answers it can think of (tests/test_submit.py).

It passes the static check (no forbidden import or call by name) and tries at run time; the test
fills in the real paths of the store and the cache. Any attempt that works is a LEAK, raised at
the end; the sandbox must refuse every one and fail the cell."""

from dataclasses import dataclass

import torch

from benchmark.api import Algorithm, Policy, RunContext

STORE, CACHE, HOME = "@STORE@", "@CACHE@", "@HOME@"


def attempts(ctx: RunContext) -> list[str]:
    """Each attempt returns a leak description when it gets something, else None."""
    b = __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)
    opener, importer = b["open"], b["__import__"]
    leaks = []

    def attempt(what, fn):
        try:
            got = fn()
        except Exception:
            return
        if got:
            leaks.append(f"{what}: {str(got)[:80]}")

    attempt("read the store", lambda: opener(STORE, "rb").read(16))
    attempt("read the cache", lambda: opener(CACHE + "/" + sorted(importer("os").listdir(CACHE))[0], "rb"))
    attempt("list the home", lambda: importer("os").listdir(HOME))
    attempt("import sqlite3", lambda: importer("sqlite3").connect(STORE).execute("select 1").fetchall())
    attempt("import the domains", lambda: importer("domains.text.domain", fromlist=["x"]).TextDomain)
    attempt("import the runner", lambda: importer("benchmark.runner", fromlist=["x"])._LOADED)
    attempt("environment", lambda: [k for k in importer("os").environ if "PREFBENCH" in k or "@HOME@" in
                                    importer("os").environ[k]])
    attempt("parent's environment", lambda: opener(f"/proc/{importer('os').getppid()}/environ", "rb").read())
    attempt("a shell", lambda: importer("os").system(f"cp {STORE} {HOME}/../stolen.sqlite") == 0 or None)
    attempt("a subprocess", lambda: importer("subprocess").run(["cat", STORE], capture_output=True).stdout)
    attempt("write into the home", lambda: opener(HOME + "/planted.txt", "w").write("x"))

    def walk_memory():
        gc = importer("gc")
        names = {"Oracle", "TextOracle", "Evaluator", "Store", "RaterChannel", "PreparationCache", "TextDomain"}
        return [type(o).__name__ for o in gc.get_objects() if type(o).__name__ in names]

    attempt("objects in memory", walk_memory)

    def through_the_channel():
        seal = importer("benchmark.seal", fromlist=["x"])  # loaded already: its vault holds only proxies
        got = []
        for proxy in list(seal._STRONG.values()):
            for name in ("oracle", "_oracle", "population", "weights", "__dict__"):
                try:  # noqa: SIM105 (contextlib is not on the submission's import list)
                    got.append(getattr(proxy, name)())
                except Exception:
                    pass
        host = object.__getattribute__(next(iter(seal._STRONG.values())), "_host")
        for handle in range(0, 20):
            if handle not in seal._STRONG:
                try:  # noqa: SIM105
                    got.append(host.call(handle, "__call__", (), {}))
                except Exception:
                    pass
        return got

    attempt("the channel's other methods and forged handles", through_the_channel)
    return leaks


class Adversary(Algorithm):
    name = "adversary"
    requires = frozenset()

    @dataclass
    class Config:
        steps: int = 1
        """Unused."""

    def train(self, ctx: RunContext, cfg: Config) -> Policy:
        leaks = attempts(ctx)
        if leaks:
            raise RuntimeError("LEAK " + " | ".join(leaks))
        torch.zeros(1)
        return ctx.domain.make_policy()
