"""What the alias desk reads and records about commands beyond their log line."""

from __future__ import annotations

from .db import Database


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
