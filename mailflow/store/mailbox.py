"""Queries of the mailbox as stored: folders synced by UID, raw messages, where each was
seen (``message_locations``), and their parse (``parsed``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .db import Database, now_utc
from .states import PENDING, Parsing

# What SQLite binds in one statement, with room to spare.
_CHUNK = 500

# The columns of a ``messages`` row as stored by ``store_messages``.
MessageRow = tuple[str, str | None, str, int, bytes, int, str, str, str | None]
# The columns of a ``parsed`` row but ``message`` and ``parsed_at``.
ParseRow = tuple[
    str | None, str | None, str | None, str | None, str | None, str | None, str | None, str
]


def integrity(db: Database) -> str:
    """SQLite's quick check of the whole database: "ok", or what is damaged."""
    return str(db.execute("pragma quick_check").fetchone()[0])


# -- folders ------------------------------------------------------------------------------


def folder_state(db: Database, folder: str) -> tuple[int, int] | None:
    """(UIDVALIDITY, last UID) of what is stored of ``folder``; None before any sync."""
    row = db.execute(
        "select uidvalidity, last_uid from folders where name = ?", [folder]
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else None


def restart_folder(db: Database, folder: str, uidvalidity: int, now: str) -> None:
    """Sync ``folder`` from its first UID under a (new) UIDVALIDITY."""
    db.execute(
        "insert into folders (name, uidvalidity, last_uid, synced_at) values (?, ?, 0, ?)"
        " on conflict (name) do update set uidvalidity = excluded.uidvalidity,"
        " last_uid = 0, synced_at = excluded.synced_at",
        [folder, uidvalidity, now],
    )


def advance_folder(db: Database, folder: str, uid: int, now: str) -> None:
    """Record that ``folder`` is stored up to ``uid``."""
    db.execute(
        "update folders set last_uid = max(last_uid, ?), synced_at = ? where name = ?",
        [uid, now, folder],
    )


# -- messages -----------------------------------------------------------------------------


def known_keys(db: Database, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` name a stored message."""
    known: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        part = list(keys[start : start + _CHUNK])
        marks = ",".join("?" * len(part))
        rows = db.execute(f"select message_key from messages where message_key in ({marks})", part)
        known.update(row[0] for row in rows)
    return known


def store_messages(db: Database, rows: Iterable[MessageRow]) -> int:
    """Store messages (message_key, message_id, sha256, size, raw, complete, stored_at,
    status, error) whose key is not stored yet; how many were."""
    return db.conn.executemany(
        "insert into messages (message_key, message_id, sha256, size, raw, complete,"
        " stored_at, status, error) values (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " on conflict (message_key) do nothing",
        list(rows),
    ).rowcount


def add_locations(
    db: Database, folder: str, uidvalidity: int, located: Iterable[tuple[int, str]]
) -> None:
    """Where messages were seen: (UID, message key) in ``folder`` under ``uidvalidity``."""
    db.conn.executemany(
        "insert into message_locations (folder, uidvalidity, uid, message)"
        " select ?, ?, ?, id from messages where message_key = ? on conflict do nothing",
        [(folder, uidvalidity, uid, key) for uid, key in located],
    )


def message_of(db: Database, key: str) -> int:
    """The id of the message stored under ``key``."""
    return int(db.execute("select id from messages where message_key = ?", [key]).fetchone()[0])


def message_counts(db: Database) -> tuple[int, int]:
    """(stored, quarantined) messages."""
    stored = db.execute("select count(*) from messages").fetchone()[0]
    quarantined = db.execute(
        "select count(*) from messages where status = ?", [Parsing.QUARANTINED]
    ).fetchone()[0]
    return int(stored), int(quarantined)


def pending_count(db: Database) -> int:
    """How many messages wait for their parse."""
    row = db.execute("select count(*) from messages where status in (?, ?)", list(PENDING))
    return int(row.fetchone()[0])


def pending(db: Database, after: int, limit: int) -> list[tuple[int, int, int]]:
    """(id, attempts, size) of the next ``limit`` messages after ``after`` waiting for their
    parse, by id."""
    return db.execute(
        "select id, attempts, size from messages where status in (?, ?)"
        " and id > ? order by id limit ?",
        [*PENDING, after, limit],
    ).fetchall()


def raws(db: Database, ids: Sequence[int]) -> dict[int, bytes]:
    """The stored bytes of messages, by id."""
    marks = ",".join("?" * len(ids))
    return dict(db.execute(f"select id, raw from messages where id in ({marks})", list(ids)))


def raw(db: Database, message: int) -> bytes:
    return bytes(db.execute("select raw from messages where id = ?", [message]).fetchone()[0])


def parse_failed(db: Database, message: int, status: Parsing, attempts: int, error: str) -> None:
    """Record a failed parse: to retry, or quarantined."""
    db.execute(
        "update messages set status = ?, attempts = ?, error = ? where id = ?",
        [status, attempts, error, message],
    )


def mark_parsed(db: Database, message: int) -> None:
    db.execute(
        "update messages set status = ?, error = null where id = ?", [Parsing.PARSED, message]
    )


# -- parses -------------------------------------------------------------------------------


def save_parse(db: Database, message: int, row: ParseRow, *, replace: bool = True) -> None:
    """The ``parsed`` row of a message (from_address, from_name, subject, date, in_reply_to,
    automatic, bounced_recipient, data); ``replace=False`` keeps one already there."""
    update = (
        "do update set from_address = excluded.from_address,"
        " from_name = excluded.from_name, subject = excluded.subject, date = excluded.date,"
        " in_reply_to = excluded.in_reply_to, automatic = excluded.automatic,"
        " bounced_recipient = excluded.bounced_recipient, data = excluded.data,"
        " parsed_at = excluded.parsed_at"
    )
    db.execute(
        "insert into parsed (message, from_address, from_name, subject, date, in_reply_to,"
        " automatic, bounced_recipient, data, parsed_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        f" on conflict (message) {update if replace else 'do nothing'}",
        [message, *row, now_utc()],
    )
