"""The SQLite store: opening it, transactions, and the recorded, append-only migrations.

Every other module reads and writes through the ``Database`` returned by ``open_db``.
The connection is in autocommit mode; writes that belong together go in one
``transaction()``, which takes the write lock up front (``BEGIN IMMEDIATE``) so that the
daemon and a command run by hand never deadlock on a lock upgrade.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000


class Database:
    """A connection as the store uses it: ``execute`` a statement, or reach the ``conn``.

    mailflow used sqlite-utils' ``Database`` for no more than this; importing that package
    took 50 ms, a third of the start of a command such as ``mailflow status``.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._savepoints = 0

    def execute(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()
    ) -> sqlite3.Cursor:
        return self.conn.execute(sql, parameters)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: released when the block ends, rolled back if it raises."""
        self._savepoints += 1
        name = f"mailflow_{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self.conn.execute(f"RELEASE SAVEPOINT {name}")


def open_db(
    path: Path | str, *, migrate: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> Database:
    """Open (creating if needed) the database file in WAL mode and bring its schema up to date.

    ``busy_timeout_ms`` is how long a write waits for another connection's lock before
    ``sqlite3.OperationalError``.
    """
    if str(path) != ":memory:":
        _prepare_file(Path(path))
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout_ms / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode is durable against a crashed or killed process, which is the
    # failure mailflow must survive; a power cut may lose the last commits, which only
    # means an IMAP message fetched again or the in-flight mail sent again.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    db = Database(conn)
    if migrate:
        apply_migrations(db)
    return db


def _prepare_file(path: Path) -> None:
    """Create the database's folder and file if needed; ``StoreError`` when this user
    cannot write them (SQLite writes its WAL and shared-memory files beside the database,
    even to read)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise StoreError(
            f"cannot create the database's folder {path.parent}: create it for the service's "
            f"user (install -d -o mailflow -g mailflow -m 2770 {path.parent})"
        ) from None
    _check_writable(path.parent, path)
    # SQLite would create the file 0644 whatever the umask; created here, it follows the
    # umask (the service's 0007 lets its group read and write it), and so do its WAL files.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    _check_writable(path, path)


def _check_writable(target: Path, database: Path) -> None:
    if os.access(target, os.W_OK):
        return
    owner, user = _user_name(target.stat().st_uid), _user_name(os.geteuid())
    raise StoreError(
        f"{target} is owned by {owner} and cannot be written by {user}: run mailflow as the "
        f"user that owns it, or give the folder to the service's user "
        f"(chown -R mailflow:mailflow {database.parent})"
    )


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@contextmanager
def without_waiting(db: Database) -> Iterator[Database]:
    """Writes that give up at once (``sqlite3.OperationalError``) when another connection
    holds the lock, instead of waiting for it: for what is only kept to go faster."""
    (waited,) = db.execute("PRAGMA busy_timeout").fetchone()
    db.conn.execute("PRAGMA busy_timeout=0")
    try:
        yield db
    finally:
        db.conn.execute(f"PRAGMA busy_timeout={int(waited)}")


@contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """All or nothing: commit when the block ends, roll back when it raises.

    Nested use becomes a savepoint, so a function that needs atomicity can be called
    inside a caller's larger transaction.
    """
    if db.conn.in_transaction:
        with db.savepoint():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


def iso(moment: dt.datetime) -> str:
    """An instant as stored: ISO 8601 in UTC, to the second."""
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def now_utc() -> str:
    """The current instant as stored: ISO 8601 in UTC with an explicit offset."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _has_migrations(db: Database) -> bool:
    found = db.execute("select 1 from sqlite_master where type = 'table' and name = '_migrations'")
    return found.fetchone() is not None


def applied_migrations(db: Database) -> list[str]:
    if not _has_migrations(db):
        return []
    return [row[0] for row in db.execute("select name from _migrations order by id")]


def apply_migrations(db: Database) -> list[str]:
    """Apply, in order and each in its own transaction, the migrations not yet recorded."""
    if not _has_migrations(db):
        with transaction(db):
            db.execute(
                "create table if not exists _migrations ("
                " id integer primary key, name text not null unique, applied_at text not null)"
            )
    done = set(applied_migrations(db))
    applied = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        with transaction(db):
            # Checked again under the write lock: another process may have just applied it.
            if db.execute("select 1 from _migrations where name = ?", [name]).fetchone():
                continue
            migration(db)
            db.execute(
                "insert into _migrations (name, applied_at) values (?, ?)", [name, now_utc()]
            )
        applied.append(name)
    return applied
