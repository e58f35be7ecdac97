"""The job queue and every job's state, in SQLite (``<runs-dir>/flipbook.db``, WAL mode).

SQLite rather than memory so that a restart (or a crash, SIGKILL included) loses nothing: queued jobs run
after the restart, finished ones keep their state, and a job that was running is marked ``interrupted`` and
can be resumed from the frames on disk. Every state change is one SQL statement guarded by the state it
expects (``UPDATE ... WHERE id = ? AND state = 'queued'``), so two workers, or a worker and a cancel request,
can never both win: whoever changes the row first decides, the other sees ``rowcount == 0``.

Each thread gets its own connection (WAL lets readers run while a writer commits); writes wait for each
other through SQLite's busy timeout.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued",
    "running",
    "done",
    "failed",
    "cancelled",
    "interrupted",
)
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
FINISHED = frozenset({DONE, FAILED, CANCELLED, INTERRUPTED})
"""States in which nothing is running for the job (an interrupted job waits for a resume request)."""
RESUMABLE = frozenset({INTERRUPTED, CANCELLED, FAILED})
RENDER = "render"
MAX_REQUEUES = 1
"""How often a job whose worker died is queued again before it is left ``interrupted`` (for a person to
resume): once, so a job that kills its worker every time (out of memory, a driver crash) cannot take the
workers down one after another for ever."""
_ADDED_COLUMNS = {"worker": "TEXT", "heartbeat_at": "REAL", "requeues": "INTEGER NOT NULL DEFAULT 0"}
"""Columns added after the first release: a database from before gets them when opened."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    batch_id TEXT,
    payload TEXT NOT NULL,
    warnings TEXT NOT NULL DEFAULT '[]',
    resume INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    error_field TEXT,
    error_type TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    heartbeat_at REAL,
    requeues INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, queued_at, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS options (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_ids TEXT NOT NULL,
    batch_id TEXT,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class NewJob:
    """A validated job, ready to be queued (``payload`` is the spec data or a still request)."""

    id: str
    kind: str
    payload: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    batch_id: str | None = None


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key`` with the fingerprint of the request it came with (the endpoint and the
    request as understood, see ``flipbook.server.submit.idempotency_key``)."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class FirstRequest:
    """What an idempotency key was first used for: the jobs (and batch) it created, and whether the request
    now is the same one (same fingerprint)."""

    job_ids: list[str]
    batch_id: str | None
    same_request: bool


class KeyUsed(Exception):
    """The idempotency key already created jobs; nothing was inserted (see :attr:`first`)."""

    def __init__(self, first: FirstRequest) -> None:
        super().__init__(f"idempotency key used for jobs {', '.join(first.job_ids)}")
        self.first = first


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table, JSON columns decoded."""

    seq: int
    id: str
    kind: str
    state: str
    batch_id: str | None
    payload: dict[str, Any]
    warnings: list[str]
    resume: bool
    cancel_requested: bool
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    error_field: str | None
    error_type: str | None
    attempts: int
    worker: str | None
    heartbeat_at: float | None
    requeues: int
    created_at: float
    queued_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        values = dict(row)
        for name in ("payload", "warnings", "progress", "result"):
            values[name] = json.loads(values[name])
        values["resume"] = bool(values["resume"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)


class JobStore:
    """The SQLite database of one runs folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        _add_missing_columns(db)

    # ---- connections -----------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (autocommit; transactions are explicit)."""
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the job store is closed")
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses nothing committed
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, so a transaction never has to upgrade."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection (the server is stopping)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    # ---- queueing --------------------------------------------------------------------------------------

    def insert(
        self,
        jobs: Sequence[NewJob],
        batch: tuple[str, dict[str, Any]] | None = None,
        key: IdempotencyKey | None = None,
    ) -> None:
        """Queue ``jobs`` (and their batch) in one transaction: all of them or none. With an idempotency
        ``key`` the key is stored in the same transaction, so jobs and key are committed together; a key that
        is already stored raises :class:`KeyUsed` and inserts nothing (a retried request can't queue twice,
        however the first one ended: answered, or the server died between the commit and the response)."""
        now = time.time()
        with self._transaction() as db:
            if key is not None:
                first = self._first_request(db, key)
                if first is not None:
                    raise KeyUsed(first)
                db.execute(
                    "INSERT INTO idempotency (key, fingerprint, job_ids, batch_id, created_at) VALUES (?, ?, ?, ?, ?)",
                    (key.key, key.fingerprint, json.dumps([j.id for j in jobs]), batch and batch[0], now),
                )
            if batch is not None:
                db.execute(
                    "INSERT INTO batches (id, created_at, options) VALUES (?, ?, ?)",
                    (batch[0], now, json.dumps(batch[1])),
                )
            db.executemany(
                "INSERT INTO jobs (id, kind, state, batch_id, payload, warnings, created_at, queued_at, "
                "updated_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                [
                    (j.id, j.kind, j.batch_id, json.dumps(j.payload), json.dumps(j.warnings), now, now, now)
                    for j in jobs
                ],
            )

    def first_request(self, key: IdempotencyKey) -> FirstRequest | None:
        """What ``key`` was first used for, or None when it is new."""
        return self._first_request(self._db(), key)

    @staticmethod
    def _first_request(db: sqlite3.Connection, key: IdempotencyKey) -> FirstRequest | None:
        row = db.execute(
            "SELECT fingerprint, job_ids, batch_id FROM idempotency WHERE key = ?", (key.key,)
        ).fetchone()
        if row is None:
            return None
        return FirstRequest(json.loads(row[1]), row[2], row[0] == key.fingerprint)

    def claim(self, worker: str | None = None) -> JobRecord | None:
        """Take the oldest queued job and mark it running by ``worker``, atomically: the guarded UPDATE means
        a job is claimed by one worker only, however many poll at once (threads or processes). The claim is
        the worker's first heartbeat."""
        now = time.time()
        rows = (
            self._db()
            .execute(
                "UPDATE jobs SET state = 'running', started_at = ?, updated_at = ?, finished_at = NULL, "
                "attempts = attempts + 1, worker = ?, heartbeat_at = ? WHERE seq = (SELECT seq FROM jobs "
                "WHERE state = 'queued' ORDER BY queued_at, seq LIMIT 1) AND state = 'queued' RETURNING *",
                (now, now, worker, now),
            )
            .fetchall()  # to the end: the statement (and its write lock) is finished before returning
        )
        return JobRecord.from_row(rows[0]) if rows else None

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        result: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
        error: str | None = None,
        error_field: str | None = None,
        error_type: str | None = None,
    ) -> bool:
        """A running job ended (done, failed, cancelled or interrupted)."""
        now = time.time()
        cursor = self._db().execute(
            "UPDATE jobs SET state = ?, result = COALESCE(?, result), progress = COALESCE(?, progress), "
            "error = ?, error_field = ?, error_type = ?, finished_at = ?, updated_at = ?, resume = 0 "
            "WHERE id = ? AND state = 'running'",
            (
                state,
                None if result is None else json.dumps(result),
                None if progress is None else json.dumps(progress),
                error,
                error_field,
                error_type,
                now,
                now,
                job_id,
            ),
        )
        return cursor.rowcount == 1

    def heartbeat(self, worker: str) -> int:
        """``worker`` is alive: its running jobs' heartbeat is now (the supervisor re-queues a job whose
        heartbeat is older than its timeout). Returns how many jobs it holds."""
        cursor = self._db().execute(
            "UPDATE jobs SET heartbeat_at = ? WHERE worker = ? AND state = 'running'", (time.time(), worker)
        )
        return cursor.rowcount

    def held_by(self, worker: str) -> list[str]:
        """The jobs ``worker`` is running."""
        rows = self._db().execute(
            "SELECT id FROM jobs WHERE worker = ? AND state = 'running' ORDER BY seq", (worker,)
        )
        return [r[0] for r in rows]

    def stale_workers(self, older_than: float) -> list[str]:
        """Workers holding a running job whose last heartbeat is older than ``older_than`` (a time)."""
        rows = self._db().execute(
            "SELECT DISTINCT worker FROM jobs WHERE state = 'running' AND worker IS NOT NULL "
            "AND heartbeat_at < ?",
            (older_than,),
        )
        return [r[0] for r in rows]

    def requeue_dead(self, job_id: str, worker: str, why: str) -> str | None:
        """The job's worker is dead (its process is gone; the caller made sure): queue the job again to
        continue from its frames on disk (a render resumes, a still image starts again), at the front of the
        queue, at most :data:`MAX_REQUEUES` times; after that it is ``interrupted``. Guarded by the worker,
        so a job another worker has claimed since is never touched. Returns the new state, or None."""
        now = time.time()
        rows = (
            self._db()
            .execute(
                "UPDATE jobs SET state = CASE WHEN requeues < ? THEN 'queued' ELSE 'interrupted' END, "
                "resume = CASE WHEN requeues < ? AND kind = ? THEN 1 ELSE resume END, "
                "finished_at = CASE WHEN requeues < ? THEN NULL ELSE ? END, "
                "error = CASE WHEN requeues < ? THEN NULL ELSE ? END, "
                "error_type = CASE WHEN requeues < ? THEN NULL ELSE 'interrupted' END, "
                "requeues = MIN(requeues + 1, ?), worker = NULL, cancel_requested = 0, updated_at = ? "
                "WHERE id = ? AND worker = ? AND state = 'running' RETURNING state",
                (MAX_REQUEUES, MAX_REQUEUES, RENDER, MAX_REQUEUES, now, MAX_REQUEUES,
                 f"{why}, a second time: resume it to try again", MAX_REQUEUES, MAX_REQUEUES + 1, now,
                 job_id, worker),
            )
            .fetchall()
        )  # fmt: skip
        return rows[0][0] if rows else None

    def save_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        """Flush a running job's progress (called at every frame)."""
        self._db().execute(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND state = 'running'",
            (json.dumps(progress), time.time(), job_id),
        )

    def cancel_waiting(self, job_id: str) -> bool:
        """Cancel a job that is not running (queued or interrupted) at once; False if it is not waiting."""
        now = time.time()
        cursor = self._db().execute(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ?, error = 'cancelled', "
            "error_type = 'cancelled' WHERE id = ? AND state IN ('queued', 'interrupted')",
            (now, now, job_id),
        )
        return cursor.rowcount == 1

    def request_cancel(self, job_id: str) -> bool:
        """Record that a running job should stop (the worker sees it through the job's Events)."""
        cursor = self._db().execute(
            "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ? AND state = 'running'",
            (time.time(), job_id),
        )
        return cursor.rowcount == 1

    def requeue_for_resume(self, job_id: str) -> bool:
        """Queue a stopped render again, to continue from its frames on disk (it goes to the back)."""
        now = time.time()
        cursor = self._db().execute(
            "UPDATE jobs SET state = 'queued', resume = 1, cancel_requested = 0, error = NULL, requeues = 0, "
            "error_field = NULL, error_type = NULL, finished_at = NULL, queued_at = ?, updated_at = ? "
            "WHERE id = ? AND kind = ? AND state IN ('interrupted', 'cancelled', 'failed')",
            (now, now, job_id, RENDER),
        )
        return cursor.rowcount == 1

    def delete(self, job_id: str) -> bool:
        """Remove a job that is not running; False if it is running (or gone)."""
        cursor = self._db().execute("DELETE FROM jobs WHERE id = ? AND state != 'running'", (job_id,))
        return cursor.rowcount == 1

    def recover(self, still_kinds: Sequence[str]) -> dict[str, list[str]]:
        """After a restart: jobs that were running are ``interrupted`` (their frames stay on disk); still
        images that were waiting are ``cancelled``, as the client that asked for them has gone."""
        now = time.time()
        marks = ", ".join("?" for _ in still_kinds) or "''"
        with self._transaction() as db:
            interrupted = [
                r[0]
                for r in db.execute(
                    "UPDATE jobs SET state = 'interrupted', finished_at = ?, updated_at = ?, "
                    "error = 'the server stopped while the job was running', error_type = 'interrupted' "
                    "WHERE state = 'running' RETURNING id",
                    (now, now),
                )
            ]
            cancelled = [
                r[0]
                for r in db.execute(
                    f"UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ?, "
                    f"error = 'the server restarted; nobody was waiting for this image any more', "
                    f"error_type = 'cancelled' WHERE state = 'queued' AND kind IN ({marks}) RETURNING id",
                    (now, now, *still_kinds),
                )
            ]
        return {"interrupted": interrupted, "cancelled": cancelled}

    # ---- reading ---------------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.from_row(row) if row is not None else None

    def list(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        state: str | None = None,
        kind: str | None = None,
        batch_id: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[JobRecord], int]:
        """A page of jobs, newest first unless asked otherwise, and how many match in all."""
        where, args = [], []
        for column, value in (("state", state), ("kind", kind), ("batch_id", batch_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if oldest_first else "DESC"
        db = self._db()
        total = db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0]
        rows = db.execute(
            f"SELECT * FROM jobs{clause} ORDER BY seq {order} LIMIT ? OFFSET ?", (*args, limit, offset)
        ).fetchall()
        return [JobRecord.from_row(r) for r in rows], total

    def counts(self) -> dict[str, int]:
        """Jobs per state."""
        rows = self._db().execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: 0 for state in STATES} | {r[0]: r[1] for r in rows}

    def batches(self) -> dict[str, list[str]]:
        """Every batch id with its job ids, in submission order."""
        rows = (
            self._db()
            .execute(
                "SELECT b.id, j.id FROM batches b LEFT JOIN jobs j ON j.batch_id = b.id ORDER BY b.created_at, j.seq"
            )
            .fetchall()
        )
        out: dict[str, list[str]] = {}
        for batch, job in rows:
            out.setdefault(batch, [])
            if job is not None:
                out[batch].append(job)
        return out

    def batch_options(self, batch_id: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT options FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    # ---- server options (A1111's /options) -------------------------------------------------------------

    def option(self, key: str, default: Any = None) -> Any:
        row = self._db().execute("SELECT value FROM options WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_option(self, key: str, value: Any) -> None:
        self._db().execute(
            "INSERT INTO options (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a database written by an older flipbook up to this schema (new columns only)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name, declaration in _ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
