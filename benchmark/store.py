"""The result store: SQLite, one row per cell.

A cell's identity (its ``run_id``) is a hash of (algorithm, domain, condition, preset, seed and
the full resolved config). A finished cell is not run again unless forced; a cell killed while
running stays ``running`` (never ``done``) and is redone by the next invocation. Every write is a
transaction.

Faults a long benchmark meets on shared machines end in one line that names the fix, never a
traceback and never a lost result (docs/design.md, "Faults"):

- a file that is not a prefbench store (garbage, another tool's database) is refused, never
  written into; a store from a newer schema is refused with both version numbers, an older one is
  migrated in place (:data:`MIGRATIONS`);
- a store locked by another writer is waited for ``$PREFBENCH_STORE_TIMEOUT`` seconds (60), then
  refused; a read-only store can still be read;
- a finished record that cannot be written (disk full, lock held too long) is spilled as JSON to
  ``<store dir>/unsaved/`` (or the temp directory when that fails too) and ingested by the next
  process that opens the store for writing;
- **one computation per cell**: a process *claims* a cell before running it (table ``claims``).
  A claim is live while its owner process is: each owner holds an exclusive ``flock`` on its own
  file under ``<store dir>/.owners/`` for as long as it lives, so a crashed owner's claim (and its
  ``running`` row) is recognised as stale at once. Claims from another host count as live for
  :data:`FOREIGN_CLAIM_TTL_S`.

Stores of machines that each ran part of a grid are merged with :func:`merge_stores` (``bench store
merge``): all or nothing, finished beats failed beats running, two different finished results of
one cell refuse the merge, and every merged record keeps where it came from in ``env["merged_from"]``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.cache import default_home, json_default
from benchmark.errors import UserError

SCHEMA_VERSION = 2
"""1: cells and meta. 2: adds ``claims`` (one computation per cell) and ``meta.application``."""
APPLICATION = "prefbench"
FOREIGN_CLAIM_TTL_S = 24 * 3600.0
"""How long a claim by a process on another host counts as live (its liveness cannot be checked)."""

_CELLS = """
CREATE TABLE IF NOT EXISTS cells (
    run_id        TEXT PRIMARY KEY,
    algo          TEXT NOT NULL,
    domain        TEXT NOT NULL,
    condition     TEXT NOT NULL,
    preset        TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    config_hash   TEXT NOT NULL,
    config_json   TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    packages_json TEXT NOT NULL,
    env_json      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'na')),
    reason        TEXT,
    metrics_json  TEXT,
    curves_json   TEXT,
    timings_json  TEXT,
    artifacts_json TEXT,
    feedback_used INTEGER,
    online_samples INTEGER,
    train_steps   INTEGER,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    wall_s        REAL
);
CREATE INDEX IF NOT EXISTS cells_by_key ON cells (domain, algo, condition, preset, seed);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, claimed_at REAL NOT NULL);
"""
MIGRATIONS = {1: _CLAIMS}
"""``{version: SQL}`` that takes a store from ``version`` to ``version + 1`` (run in one transaction)."""


@dataclass
class Record:
    run_id: str
    algo: str
    domain: str
    condition: str
    preset: str
    seed: int
    config_hash: str
    config: dict
    code_version: str
    packages: dict
    env: dict
    status: str
    reason: str | None
    metrics: dict
    curves: dict
    timings: dict
    artifacts: list
    feedback_used: int | None
    online_samples: int | None
    train_steps: int | None
    started_at: float
    finished_at: float | None
    wall_s: float | None

    @staticmethod
    def from_row(row: sqlite3.Row) -> Record:
        def j(x: str | None, default: Any) -> Any:
            return json.loads(x) if x else default

        return Record(
            run_id=row["run_id"], algo=row["algo"], domain=row["domain"], condition=row["condition"],
            preset=row["preset"], seed=row["seed"], config_hash=row["config_hash"],
            config=j(row["config_json"], {}), code_version=row["code_version"],
            packages=j(row["packages_json"], {}), env=j(row["env_json"], {}), status=row["status"],
            reason=row["reason"], metrics=j(row["metrics_json"], {}), curves=j(row["curves_json"], {}),
            timings=j(row["timings_json"], {}), artifacts=j(row["artifacts_json"], []),
            feedback_used=row["feedback_used"], online_samples=row["online_samples"],
            train_steps=row["train_steps"], started_at=row["started_at"], finished_at=row["finished_at"],
            wall_s=row["wall_s"],
        )


def _dumps(x: Any) -> str:
    return json.dumps(x, default=json_default, sort_keys=True, allow_nan=True)


def _insert(conn: sqlite3.Connection, record: Record) -> None:
    """Write a whole record (one row per cell: it replaces the cell's row) in the open transaction."""
    conn.execute(
        "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.run_id, record.algo, record.domain, record.condition, record.preset, record.seed,
         record.config_hash, _dumps(record.config), record.code_version, _dumps(record.packages),
         _dumps(record.env), record.status, record.reason, _dumps(record.metrics), _dumps(record.curves),
         _dumps(record.timings), _dumps(record.artifacts), record.feedback_used, record.online_samples,
         record.train_steps, record.started_at, record.finished_at, record.wall_s),
    )


def default_store_path() -> Path:
    return default_home() / "prefbench.sqlite"


def store_timeout() -> float:
    """Seconds to wait for another writer's lock: ``$PREFBENCH_STORE_TIMEOUT`` (60)."""
    try:
        return max(0.0, float(os.environ.get("PREFBENCH_STORE_TIMEOUT", "60")))
    except ValueError:
        raise UserError(f"PREFBENCH_STORE_TIMEOUT={os.environ['PREFBENCH_STORE_TIMEOUT']!r}: give seconds, "
                        "e.g. 60") from None


def explain(e: BaseException, path: Path, doing: str) -> str:
    """One line for a SQLite or OS fault on the store at ``path``: what happened and the fix."""
    msg = str(e).lower()
    aside = f"move it aside (mv {path} {path}.bad) or pass --store PATH"
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "disk is full" in msg:
        return f"cannot {doing} the store at {path}: the disk is full; free some space and run the command again"
    if "locked" in msg or "busy" in msg:
        return (f"cannot {doing} the store at {path}: another process has held its lock for more than "
                f"{store_timeout():.0f}s; wait for it to finish, raise PREFBENCH_STORE_TIMEOUT, or pass --store PATH")
    if "readonly" in msg or "read-only" in msg:
        return (f"cannot {doing} the store at {path}: it is read-only; make it writable or pass --store PATH "
                "(reading it, e.g. `bench runs`, still works)")
    if "not a database" in msg or "malformed" in msg or "encrypted" in msg:
        return f"{path} is not a readable prefbench store ({e}); {aside}"
    strerror = getattr(e, "strerror", None) or str(e)
    return (f"cannot {doing} the store at {path}: {strerror}; pass --store PATH or set PREFBENCH_HOME to a "
            "writable directory")


class Store:
    """SQLite store of cells. ``Store(path)`` creates the file and schema if needed, migrates an
    older schema and refuses anything that is not a prefbench store."""

    def __init__(self, path: Path | str | None = None, *, readonly: bool = False):
        self.path = Path(path) if path is not None else default_store_path()
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise UserError(f"no store at {self.path}: run `bench run ...` first, or pass --store PATH")
        try:
            self._conn = self._connect()
            self._conn.row_factory = sqlite3.Row
            version = self._identify()
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")  # only once it is known to be ours
                self._create_or_migrate(version)
        except (OSError, sqlite3.Error) as e:
            with contextlib.suppress(Exception):
                self._conn.close()
            raise UserError(explain(e, self.path, "read" if readonly else "write")) from None
        if not readonly:
            self._ingest_unsaved()

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, timeout=store_timeout())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent, os.W_OK):
            raise PermissionError(13, "Permission denied")
        return sqlite3.connect(self.path, timeout=store_timeout())

    def _identify(self) -> int | None:
        """The store's schema version (None: an empty file, a new store). Refuses another tool's
        database and a newer schema."""
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
        if "cells" not in tables or "schema_version" not in meta or meta.get("application", APPLICATION) != APPLICATION:
            raise UserError(f"{self.path} is an SQLite database but not a prefbench store (tables: "
                            f"{', '.join(sorted(tables))}); pass --store PATH to a new or prefbench file")
        version = int(meta["schema_version"])
        if version > SCHEMA_VERSION:
            raise UserError(f"the store at {self.path} has schema version {version}, written by a newer prefbench; "
                            f"this one reads versions up to {SCHEMA_VERSION}: upgrade prefbench "
                            "(git pull && pip install -e .) or pass --store PATH")
        return version

    def _create_or_migrate(self, version: int | None) -> None:
        with self._tx():
            steps = [_CELLS + _CLAIMS] if version is None else [MIGRATIONS[v] for v in range(version, SCHEMA_VERSION)]
            for ddl in steps:
                for statement in filter(str.strip, ddl.split(";")):
                    self._conn.execute(statement)
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                               (str(SCHEMA_VERSION),))
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('application', ?)", (APPLICATION,))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``) so that it waits for another
        writer's lock rather than failing half-way."""
        conn = self._conn
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    @contextlib.contextmanager
    def _writing(self, doing: str = "write") -> Iterator[sqlite3.Connection]:
        try:
            with self._tx() as conn:
                yield conn
        except (OSError, sqlite3.Error) as e:
            raise UserError(explain(e, self.path, doing)) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def schema_version(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    # -- writes ----------------------------------------------------------------------------
    def start(self, *, run_id: str, algo: str, domain: str, condition: str, preset: str, seed: int,
              config_hash: str, config: dict, code_version: str, packages: dict, env: dict) -> None:
        with self._writing() as conn:
            conn.execute(
                """INSERT OR REPLACE INTO cells (run_id, algo, domain, condition, preset, seed, config_hash,
                   config_json, code_version, packages_json, env_json, status, started_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)""",
                (run_id, algo, domain, condition, preset, seed, config_hash, _dumps(config), code_version,
                 _dumps(packages), _dumps(env), time.time()),
            )

    def finish(self, run_id: str, *, status: str, reason: str | None = None, metrics: dict | None = None,
               curves: dict | None = None, timings: dict | None = None, artifacts: list | None = None,
               feedback_used: int | None = None, online_samples: int | None = None,
               train_steps: int | None = None) -> None:
        now = time.time()
        with self._writing() as conn:
            cur = conn.execute(
                """UPDATE cells SET status=?, reason=?, metrics_json=?, curves_json=?, timings_json=?,
                   artifacts_json=?, feedback_used=?, online_samples=?, train_steps=?, finished_at=?,
                   wall_s=? - started_at WHERE run_id=?""",
                (status, reason, _dumps(metrics or {}), _dumps(curves or {}), _dumps(timings or {}),
                 _dumps(artifacts or []), feedback_used, online_samples, train_steps, now, now, run_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no running cell {run_id} in {self.path}")

    def put(self, record: Record) -> None:
        """Write a whole record. A finished one that cannot be written (disk full, lock held too
        long) is spilled to ``unsaved/`` first, so that it is never lost, then the error raised."""
        try:
            with self._writing() as conn:
                _insert(conn, record)
        except UserError as e:
            if record.status == "running":
                raise
            where = self._spill(record)
            raise UserError(f"{e}. The finished cell {record.run_id} was saved to {where} and goes into the "
                            "store the next time it is opened for writing") from None

    def delete(self, run_id: str) -> None:
        with self._writing() as conn:
            conn.execute("DELETE FROM cells WHERE run_id=?", (run_id,))

    def _unsaved_dir(self) -> Path:
        return self.path.parent / "unsaved"

    def _spill(self, record: Record) -> Path:
        text = _dumps({"store": str(self.path.resolve()), "record": dataclasses.asdict(record)})
        for folder in (self._unsaved_dir(), Path(tempfile.gettempdir()) / "prefbench-unsaved"):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{record.run_id}.json"
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(text)
                os.replace(tmp, path)
                return path
            except OSError:
                continue
        raise UserError(f"cannot save the finished cell {record.run_id} anywhere (the store and the temp directory "
                        "are not writable)")

    def _ingest_unsaved(self) -> None:
        """Records spilled by an earlier process (here or in the temp directory) go into the store."""
        folders = [self._unsaved_dir(), Path(tempfile.gettempdir()) / "prefbench-unsaved"]
        for path in sorted(p for f in folders if f.is_dir() for p in f.glob("*.json")):
            try:
                spilled = json.loads(path.read_text())
                if spilled["store"] != str(self.path.resolve()):
                    continue  # another store's
                rec = Record(**spilled["record"])
            except (OSError, ValueError, TypeError, KeyError):
                continue  # a partial or foreign file: leave it for a person to look at
            mine = self.get(rec.run_id)
            if mine is None or mine.status == "running" or (mine.finished_at or 0) <= (rec.finished_at or 0):
                self.put(rec)
            path.unlink(missing_ok=True)

    # -- claims: one computation per cell ------------------------------------------------------
    def claim(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Claim cells for this process, in one transaction. Returns ``{run_id: owner}`` for the
        cells another live process holds (not claimed); stale claims are taken over."""
        me = _owner_token(self.path.parent)
        busy: dict[str, str] = {}
        with self._writing("claim cells in") as conn:
            for run_id in run_ids:
                row = conn.execute("SELECT owner, claimed_at FROM claims WHERE run_id=?", (run_id,)).fetchone()
                if row is not None and row["owner"] != me and _owner_alive(self.path.parent, row["owner"],
                                                                           row["claimed_at"]):
                    busy[run_id] = row["owner"]
                    continue
                conn.execute("INSERT OR REPLACE INTO claims (run_id, owner, claimed_at) VALUES (?, ?, ?)",
                             (run_id, me, time.time()))
        return busy

    def release(self, run_ids: Iterable[str]) -> None:
        """Give up this process's claims (the cells' rows say how they ended)."""
        me = _owner_token(self.path.parent)
        with self._writing("release cells in") as conn:
            conn.executemany("DELETE FROM claims WHERE run_id=? AND owner=?", [(r, me) for r in run_ids])

    def holder(self, run_id: str) -> str | None:
        """The live process (other than this one) that holds the cell, or None."""
        row = self._conn.execute("SELECT owner, claimed_at FROM claims WHERE run_id=?", (run_id,)).fetchone()
        if row is None or row["owner"] == _owner_token(self.path.parent):
            return None
        return row["owner"] if _owner_alive(self.path.parent, row["owner"], row["claimed_at"]) else None

    def wait_for(self, run_id: str, poll_s: float = 1.0) -> Record | None:
        """Block while another live process holds the cell; then its stored record (or None)."""
        while self.holder(run_id) is not None:
            time.sleep(poll_s)
        return self.get(run_id)

    # -- reads -----------------------------------------------------------------------------
    def get(self, run_id: str) -> Record | None:
        row = self._conn.execute("SELECT * FROM cells WHERE run_id=?", (run_id,)).fetchone()
        return Record.from_row(row) if row else None

    def find(self, prefix: str) -> Record:
        """A record by run id or unique run-id prefix."""
        if not prefix.strip():
            raise UserError("give a run id (or a unique prefix of one): `bench runs` lists the stored runs")
        rows = self._conn.execute(
            "SELECT * FROM cells WHERE run_id LIKE ? ORDER BY run_id", (prefix.replace("%", "") + "%",)
        ).fetchall()
        if not rows:
            raise UserError(f"no run {prefix!r} in {self.path}: `bench runs` lists the stored runs")
        if len(rows) > 1:
            raise UserError(f"run id {prefix!r} is ambiguous ({len(rows)} runs): give more characters")
        return Record.from_row(rows[0])

    def records(self, *, status: str | None = None, domain: str | None = None, algo: str | None = None,
                preset: str | None = None, condition: str | None = None) -> list[Record]:
        where, args = [], []
        for col, val in [("status", status), ("domain", domain), ("algo", algo), ("preset", preset),
                         ("condition", condition)]:
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = "SELECT * FROM cells" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY domain, algo, condition, preset, seed, run_id"
        return [Record.from_row(r) for r in self._conn.execute(sql, args).fetchall()]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records())

    def status_of(self, run_id: str) -> str | None:
        row = self._conn.execute("SELECT status FROM cells WHERE run_id=?", (run_id,)).fetchone()
        return row["status"] if row else None

    def fingerprint(self) -> str:
        """A hash of the store's cells (every column of every row): which version of a store a
        merged record came from."""
        h = hashlib.sha256()
        for row in self._conn.execute("SELECT * FROM cells ORDER BY run_id"):
            h.update(_dumps(list(row)).encode())
        return h.hexdigest()[:16]

    # -- merging ---------------------------------------------------------------------------
    def merge_from(self, *paths: Path | str, prefer: Path | str | None = None) -> MergeReport:
        """Merge the cells of the stores at ``paths`` into this one, in one transaction (all or
        nothing): see :func:`merge_stores` for the rules."""
        return self._merge([_read_source(Path(p), self.path) for p in paths], prefer)

    def _merge(self, sources: list[_Source], prefer: Path | str | None) -> MergeReport:
        with self._writing("merge into") as conn:
            current = {r.run_id: (r, self.path.resolve()) for r in self.records()}
            writes, reports = _plan(current, sources, _preferred(prefer, sources, self.path))
            for rec in writes:
                _insert(conn, rec)
        return MergeReport(str(self.path), reports)


# -- merging stores: several machines ran parts of a grid ----------------------------------------
VOLATILE_METRICS = frozenset({"wall_s"})
"""Metrics that differ between two runs of one cell (timings): not compared when merging."""
_RANK = {"running": 0, "failed": 1, "done": 2, "na": 2}
"""Which record of a cell wins a merge: a finished one (done, n/a) over a failed one over a running one."""


@dataclass
class SourceReport:
    """What merging one store did to the target, cell by cell."""

    path: str
    fingerprint: str
    cells: int
    added: int = 0
    """cells the target did not have"""
    replaced: int = 0
    """cells whose record replaced the target's (finished over failed/running, the newer of two
    unfinished ones, or the ``--prefer`` store's)"""
    same: int = 0
    """cells the target already had with the same result"""
    kept: int = 0
    """cells where the target's record was kept (it is finished, newer or preferred)"""


@dataclass
class MergeReport:
    target: str
    sources: list[SourceReport]

    @property
    def changed(self) -> int:
        return sum(s.added + s.replaced for s in self.sources)


@dataclass
class _Source:
    path: Path
    fingerprint: str
    records: list[Record]


def same_result(a: Record, b: Record) -> bool:
    """The same cell with the same outcome: status, config hash and metrics (but wall time)."""
    def stable(m: dict) -> str:
        return _dumps({k: v for k, v in m.items() if k not in VOLATILE_METRICS})

    return a.status == b.status and a.config_hash == b.config_hash and stable(a.metrics) == stable(b.metrics)


def _read_source(path: Path, target: Path) -> _Source:
    if not path.exists():
        raise UserError(f"no store at {path}: give the path of a prefbench store (.sqlite) to merge")
    if target.exists() and path.resolve() == target.resolve():
        raise UserError(f"{path} is the target store itself: give the other stores to merge into it")
    with Store(path, readonly=True) as st:
        return _Source(path.resolve(), st.fingerprint(), st.records())


def _preferred(prefer: Path | str | None, sources: Sequence[_Source], target: Path) -> Path | None:
    if prefer is None:
        return None
    path = Path(prefer).resolve()
    stores = [s.path for s in sources] + [target.resolve()]
    if path not in stores:
        raise UserError(f"--prefer {prefer}: not one of the stores being merged ({', '.join(map(str, stores))})")
    return path


def _decide(mine: Record | None, origin: Path | None, theirs: Record, source: Path, prefer: Path | None) -> str:
    """``added``, ``same``, ``replaced``, ``kept`` or ``conflict`` (two different finished results)."""
    if mine is None:
        return "added"
    if same_result(mine, theirs):
        return "same"
    rank_mine, rank_theirs = _RANK[mine.status], _RANK[theirs.status]
    if rank_mine == rank_theirs == 2:
        if prefer is not None and prefer in (origin, source):
            return "replaced" if prefer == source else "kept"
        return "conflict"
    if rank_mine != rank_theirs:
        return "replaced" if rank_theirs > rank_mine else "kept"
    newer = (theirs.finished_at or theirs.started_at) > (mine.finished_at or mine.started_at)
    return "replaced" if newer else "kept"


def _with_provenance(rec: Record, source: _Source) -> Record:
    """The record, its ``env.merged_from`` extended by the store it comes from (path and fingerprint)."""
    chain = rec.env.get("merged_from")
    chain = list(chain) if isinstance(chain, list) else []
    entry = {"store": str(source.path), "store_sha256": source.fingerprint, "merged_at": time.time()}
    return dataclasses.replace(rec, env={**rec.env, "merged_from": [*chain, entry]})


def _plan(current: dict[str, tuple[Record, Path]], sources: Sequence[_Source],
          prefer: Path | None) -> tuple[list[Record], list[SourceReport]]:
    """The records to write and what each source did; a conflict refuses the whole merge."""
    writes: dict[str, Record] = {}
    reports: list[SourceReport] = []
    conflicts: list[tuple[str, Path, Path]] = []
    for src in sources:
        rep = SourceReport(str(src.path), src.fingerprint, len(src.records))
        for theirs in src.records:
            mine, origin = current.get(theirs.run_id, (None, None))
            what = _decide(mine, origin, theirs, src.path, prefer)
            if what == "conflict":
                conflicts.append((theirs.run_id, origin, src.path))  # type: ignore[arg-type]
                continue
            setattr(rep, what, getattr(rep, what) + 1)
            if what in ("added", "replaced"):
                current[theirs.run_id] = (_with_provenance(theirs, src), src.path)
                writes[theirs.run_id] = current[theirs.run_id][0]
        reports.append(rep)
    if conflicts:
        ids = ", ".join(c[0] for c in conflicts[:3]) + (", ..." if len(conflicts) > 3 else "")
        _, a, b = conflicts[0]
        raise UserError(f"cannot merge: {len(conflicts)} cell(s) are done in two stores with different metrics "
                        f"({ids}; first between {a} and {b}: different code versions or thread counts?); nothing "
                        "was written: pass --prefer STORE to keep that store's results, or leave one store out")
    return list(writes.values()), reports


def merge_stores(into: Path | str | None, sources: Sequence[Path | str], *,
                 prefer: Path | str | None = None) -> MergeReport:
    """Merge the stores ``sources`` into ``into`` (default: the default store; created if need be),
    all or nothing, in one transaction. Per cell (run id):

    - not in the target: added; the same result (status, config hash, metrics but wall time): kept once;
    - a finished record (done, n/a) beats a failed one, which beats a running one; of two failed or
      two running ones the newer wins;
    - two finished records with different results are a conflict: the whole merge is refused (one
      line naming the run ids), unless ``prefer`` names one of the two stores (a source or the target).

    Each record written remembers where it came from: ``env["merged_from"]``, a list of
    ``{store, store_sha256, merged_at}`` (a record merged again keeps its earlier entries).
    """
    target = Path(into) if into is not None else default_store_path()
    srcs = [_read_source(Path(p), target) for p in sources]
    if not target.exists():  # refuse a conflicting merge before creating anything
        _plan({}, srcs, _preferred(prefer, srcs, target))
    with Store(target) as st:
        return st._merge(srcs, prefer)


# -- owners: a process is alive while it holds the flock on its own file -------------------------
_OWNERS: dict[str, tuple[str, Any]] = {}


def _owner_file(folder: Path, token: str) -> Path:
    return folder / ".owners" / f"{token.rsplit(' ', 1)[-1]}.lock"


def _owner_token(folder: Path) -> str:
    """This process's owner token for stores in ``folder`` (created, and its flock taken, once)."""
    key = str(folder.resolve())
    entry = _OWNERS.get(key)
    if entry is not None and entry[0].split(" ")[1] == str(os.getpid()):  # not a forked parent's
        return entry[0]
    token = f"{platform.node()} {os.getpid()} {uuid.uuid4().hex[:12]}"
    path = _owner_file(folder, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w")  # noqa: SIM115 - held open for the life of the process: that is the liveness
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(token + "\n")
    fh.flush()
    _OWNERS[key] = (token, fh)
    atexit.register(_forget_owner_file, path)  # a killed process leaves it; the next checker removes it
    return token


def _forget_owner_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _owner_alive(folder: Path, owner: str, claimed_at: float) -> bool:
    host = owner.split(" ")[0]
    if host != platform.node():
        return time.time() - claimed_at < FOREIGN_CLAIM_TTL_S
    path = _owner_file(folder, owner)
    try:
        fh = open(path)  # noqa: SIM115
    except OSError:
        return False  # its file is gone: the owner is
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        path.unlink()
    return False


def describe_owner(owner: str) -> str:
    parts = owner.split(" ")
    return f"pid {parts[1]} on {parts[0]}" if len(parts) == 3 else owner
