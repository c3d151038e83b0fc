"""The result store: SQLite, one row per cell.

A cell's identity (its ``run_id``) is a hash of (algorithm, domain, condition, preset, seed and
the full resolved config). A finished cell is not run again unless forced; a cell killed while
running stays ``running`` (never ``done``) and is redone by the next invocation. Every write is a
transaction. Only one process writes (the driver), so there are no lock fights.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.cache import default_home, json_default
from benchmark.errors import UserError

SCHEMA_VERSION = 1

_SCHEMA = """
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


def default_store_path() -> Path:
    return default_home() / "prefbench.sqlite"


class Store:
    """SQLite store of cells. ``Store(path)`` creates the file and schema if needed."""

    def __init__(self, path: Path | str | None = None, *, readonly: bool = False):
        self.path = Path(path) if path is not None else default_store_path()
        if readonly:
            if not self.path.exists():
                raise UserError(f"no store at {self.path}: run `bench run ...` first, or pass --store PATH")
            uri = f"file:{self.path.resolve()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=30)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not os.access(self.path.parent, os.W_OK):
                    raise PermissionError(13, "Permission denied")
                self._conn = sqlite3.connect(self.path, timeout=30)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(_SCHEMA)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                self._conn.commit()
            except (OSError, sqlite3.OperationalError) as e:
                msg = getattr(e, "strerror", None) or str(e)
                raise UserError(
                    f"cannot write the store at {self.path}: {msg}; pass --store PATH or set PREFBENCH_HOME "
                    "to a writable directory"
                ) from None
        self._conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------------
    def start(self, *, run_id: str, algo: str, domain: str, condition: str, preset: str, seed: int,
              config_hash: str, config: dict, code_version: str, packages: dict, env: dict) -> None:
        with self._conn:
            self._conn.execute(
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
        with self._conn:
            cur = self._conn.execute(
                """UPDATE cells SET status=?, reason=?, metrics_json=?, curves_json=?, timings_json=?,
                   artifacts_json=?, feedback_used=?, online_samples=?, train_steps=?, finished_at=?,
                   wall_s=? - started_at WHERE run_id=?""",
                (status, reason, _dumps(metrics or {}), _dumps(curves or {}), _dumps(timings or {}),
                 _dumps(artifacts or []), feedback_used, online_samples, train_steps, now, now, run_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no running cell {run_id} in {self.path}")

    def put(self, record: Record) -> None:
        """Write a whole record (used by executors that ran the cell elsewhere)."""
        with self._conn:
            self._conn.execute(
                """INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                   ?, ?, ?, ?, ?)""",
                (record.run_id, record.algo, record.domain, record.condition, record.preset, record.seed,
                 record.config_hash, _dumps(record.config), record.code_version, _dumps(record.packages),
                 _dumps(record.env), record.status, record.reason, _dumps(record.metrics),
                 _dumps(record.curves), _dumps(record.timings), _dumps(record.artifacts),
                 record.feedback_used, record.online_samples, record.train_steps, record.started_at,
                 record.finished_at, record.wall_s),
            )

    def delete(self, run_id: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM cells WHERE run_id=?", (run_id,))

    # -- reads -----------------------------------------------------------------------------
    def get(self, run_id: str) -> Record | None:
        row = self._conn.execute("SELECT * FROM cells WHERE run_id=?", (run_id,)).fetchone()
        return Record.from_row(row) if row else None

    def find(self, prefix: str) -> Record:
        """A record by run id or unique run-id prefix."""
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
