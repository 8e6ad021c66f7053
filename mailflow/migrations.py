"""The schema, as an append-only list of migrations.

Never edit or reorder a migration that has shipped: add a new one at the end. Each runs
once, inside a transaction, and is recorded by name in ``_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils


def _script(db: sqlite_utils.Database, sql: str) -> None:
    """Run statements one at a time: ``executescript`` would commit the migration's transaction."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement!r}")


def _mailbox(db: sqlite_utils.Database) -> None:
    """Folders synced by UID, raw messages stored before anything else, and their parse."""
    _script(
        db,
        """
        create table folders (
            name text primary key,
            uidvalidity integer not null,
            last_uid integer not null default 0,
            synced_at text
        );
        -- One row per distinct message: keyed by its Message-ID, or by the SHA-256 of its
        -- bytes when it has none. ``raw`` holds the bytes exactly as fetched (only the
        -- header when the message was too large to fetch, with complete = 0).
        create table messages (
            id integer primary key,
            message_key text not null unique,
            message_id text,
            sha256 text not null,
            size integer not null,
            raw blob not null,
            complete integer not null default 1,
            stored_at text not null,
            status text not null default 'new'
                check (status in ('new', 'parsed', 'retry', 'quarantined')),
            attempts integer not null default 0,
            error text
        );
        create index messages_pending on messages (status) where status in ('new', 'retry');
        -- Where each message was seen: a message copied to two folders, or seen again after
        -- a UIDVALIDITY change, has several locations and one row in messages.
        create table message_locations (
            folder text not null,
            uidvalidity integer not null,
            uid integer not null,
            message integer not null references messages (id),
            primary key (folder, uidvalidity, uid)
        );
        create index message_locations_message on message_locations (message);
        -- The interpretation of a message; can be dropped and rebuilt from messages.raw.
        create table parsed (
            message integer primary key references messages (id),
            from_address text,
            from_name text,
            subject text,
            date text,
            in_reply_to text,
            automatic text,
            bounced_recipient text,
            data text not null,
            parsed_at text not null
        );
        create index parsed_from on parsed (from_address);
        """,
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_mailbox", _mailbox),
]
