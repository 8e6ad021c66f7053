"""The log of commands written to the alias (``commands``), and what checking them needs."""

from __future__ import annotations

import datetime as dt

from .db import Database, iso


def raw_message(db: Database, message: int) -> bytes | None:
    """The bytes of a stored message, as fetched (DKIM is checked against these)."""
    row = db.execute("select raw from messages where id = ?", [message]).fetchone()
    return bytes(row[0]) if row else None


def signature_obeyed(db: Database, signature: str) -> int | None:
    """The message of an earlier command obeyed under the same DKIM signatures, if any."""
    row = db.execute(
        "select message from commands where signature = ? and status != 'refused'"
        " order by message limit 1",
        [signature],
    ).fetchone()
    return int(row[0]) if row else None


def record_signature(db: Database, message: int, signature: str) -> None:
    db.execute("update commands set signature = ? where message = ?", [signature, message])


def log_command(
    db: Database, message: int, sender: str, verb: str, arguments: str, status: str,
    outcome: str, created: dt.datetime,
) -> None:  # fmt: skip
    """Record what became of a command (a message is logged once; a retry overwrites)."""
    db.execute(
        "insert or replace into commands (message, sender, verb, arguments, status, outcome,"
        " created_at) values (?, ?, ?, ?, ?, ?, ?)",
        [message, sender, verb, arguments, status, outcome, iso(created)],
    )


def refusals_told_since(db: Database, sender: str, since: dt.datetime) -> bool:
    """Whether the staff were told of a refused command of ``sender`` since ``since``."""
    row = db.execute(
        "select 1 from commands where sender = ? and status = 'refused' and notified_at >= ?",
        [sender, iso(since)],
    ).fetchone()
    return row is not None


def untold_refusals(db: Database, sender: str, besides: int) -> int:
    """How many refused commands of ``sender`` (but ``besides``) the staff were not told of."""
    row = db.execute(
        "select count(*) from commands where sender = ? and status = 'refused'"
        " and notified_at is null and message != ?",
        [sender, besides],
    ).fetchone()
    return int(row[0])


def mark_refusals_told(db: Database, sender: str, told: dt.datetime) -> None:
    """Note that the staff were told of every refused command of ``sender`` so far."""
    db.execute(
        "update commands set notified_at = ? where sender = ? and status = 'refused'"
        " and notified_at is null",
        [iso(told), sender],
    )
