"""The schema, as an append-only list of migrations.

Never edit or reorder a migration that has shipped: add a new one at the end. Each runs
once, inside a transaction, and is recorded by name in ``_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .db import Database


def _script(db: Database, sql: str) -> None:
    """Run statements one at a time: ``executescript`` would commit the migration's transaction."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement!r}")


def _mailbox(db: Database) -> None:
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


def _workflows(db: Database) -> None:
    """The roster, the outbox, what each workflow step did, and what each message was."""
    _script(
        db,
        """
        create table settings (
            key text primary key,
            value text not null
        );
        create table defis (
            id text primary key,
            name text not null,
            host text not null default '',
            language text,
            active_from text,
            active_until text
        );
        create table members (
            defi text not null references defis (id) on delete cascade,
            address text not null,
            name text not null default '',
            primary key (defi, address)
        );
        create index members_address on members (address);
        create table staff (
            address text primary key,
            name text not null default '',
            role text not null default ''
        );
        -- Problems with an address the staff should know of (a bounce, a reply from a
        -- non-member), until resolved.
        create table address_flags (
            id integer primary key,
            address text not null,
            kind text not null,
            message integer references messages (id),
            detail text not null default '',
            created_at text not null,
            reported_in text
        );
        create unique index address_flags_once on address_flags (address, kind, message);
        -- One row per mail to send; ``key`` makes queuing the same mail twice a no-op.
        create table outbox (
            id integer primary key,
            key text not null unique,
            workflow text not null,
            occurrence text not null,
            step text not null,
            recipient text not null,
            to_addrs text not null,
            sender text not null,
            message_id text not null unique,
            subject text not null,
            raw blob not null,
            status text not null default 'queued'
                check (status in ('queued', 'sending', 'sent', 'failed')),
            attempts integer not null default 0,
            next_attempt_at text not null,
            queued_at text not null,
            sent_at text,
            error text,
            refused text,
            reported_at text
        );
        create index outbox_due on outbox (next_attempt_at) where status in ('queued', 'sending');
        -- What each step of each occurrence of a workflow did: the persisted schedule.
        create table runs (
            workflow text not null,
            occurrence text not null,
            step text not null,
            due_at text not null,
            ran_at text not null,
            status text not null check (status in ('done', 'late', 'skipped')),
            note text not null default '',
            primary key (workflow, occurrence, step)
        );
        create table skipped_occurrences (
            workflow text not null,
            occurrence text not null,
            reason text not null,
            created_at text not null,
            primary key (workflow, occurrence)
        );
        -- What the engine took each parsed message for, once.
        create table inbound (
            message integer primary key references messages (id),
            received_at text not null,
            kind text not null,
            status text not null,
            sender text,
            workflow text,
            occurrence text,
            respondent text,
            via text,
            data text,
            shown_in text
        );
        create index inbound_answers on inbound (workflow, occurrence, respondent)
            where kind = 'answer';
        """,
    )


def _events_and_alias(db: Database) -> None:
    """Events with their change history, mentors, announcements, commands by mail, help."""
    _script(
        db,
        """
        create table mentors (
            address text primary key,
            name text not null default '',
            defis text not null default ''
        );
        -- Events from the planning file, an ICS feed or a command; ``sequence`` grows with
        -- every significant change, as iCalendar's SEQUENCE does.
        create table events (
            id text primary key,
            uid text not null unique,
            kind text not null,
            title text not null,
            starts text not null,
            ends text not null,
            all_day integer not null default 0,
            place text not null default '',
            theme text not null default '',
            agenda text not null default '',
            audience text not null,
            source text not null,
            status text not null default 'confirmed' check (status in ('confirmed', 'cancelled')),
            sequence integer not null default 0,
            fingerprint text not null,
            updated_at text not null
        );
        create index events_starts on events (starts);
        create table event_changes (
            id integer primary key,
            event text not null references events (id),
            sequence integer not null,
            change text not null,
            detail text not null,
            created_at text not null,
            notified_at text
        );
        create table announcements (
            id integer primary key,
            workflow text not null,
            text text not null,
            author text not null,
            message integer references messages (id),
            created_at text not null,
            shown_in text
        );
        -- Every command received by mail, executed or not, with its outcome.
        create table commands (
            message integer primary key references messages (id),
            sender text not null,
            verb text,
            arguments text not null default '{}',
            status text not null check (status in ('done', 'failed', 'refused')),
            outcome text not null,
            created_at text not null
        );
        -- Mail to the alias that asks the staff something, until a staff member answers.
        create table help_requests (
            message integer primary key references messages (id),
            sender text not null,
            respondent text,
            subject text not null,
            message_id text,
            received_at text not null,
            answered_at text,
            answered_by text,
            reminded_in text
        );
        """,
    )


def _delivery(db: Database) -> None:
    """Delivery per recipient, the addresses no longer mailed, and what the staff were told."""
    _script(
        db,
        """
        -- What became of each address of an outbox row: accepted (sent), refused for a
        -- while (retry), refused for good (failed: rejected by the server with 5xx,
        -- exhausted its retries, or the whole message refused after others had it), or
        -- left out of the envelope because it is suppressed.
        create table deliveries (
            outbox integer not null references outbox (id),
            address text not null,
            status text not null check (status in ('sent', 'retry', 'failed', 'suppressed')),
            failure text check (failure in ('rejected', 'exhausted', 'message')),
            attempt integer not null default 0,
            code integer,
            detail text not null default '',
            updated_at text not null,
            reported_on text,
            primary key (outbox, address)
        );
        create index deliveries_address on deliveries (address);
        create index deliveries_unreported on deliveries (outbox)
            where status = 'failed' and reported_on is null;
        -- Addresses mailflow no longer writes to (refused with 5xx, or a hard bounce),
        -- until the roster stops listing them or a staff command reactivates them.
        create table suppressed (
            address text primary key,
            reason text not null check (reason in ('refused', 'bounced')),
            code text not null default '',
            detail text not null default '',
            outbox integer references outbox (id),
            message integer references messages (id),
            created_at text not null,
            reported_on text
        );
        -- Why a failed row failed: refused (5xx for the whole message), exhausted (its
        -- temporary failures outlasted the retries), recipients (every address failed),
        -- no_recipient (every address was suppressed: nothing was sent).
        alter table outbox add column failure text;
        """,
    )


def _holds(db: Database) -> None:
    """Why a step was skipped, notices owed to the staff, and what they were shown."""
    _script(
        db,
        """
        alter table runs add column reason text not null default '';
        -- Things the staff must be told once: a step held or skipped, a step that could not
        -- be prepared. ``key`` makes telling twice a no-op; ``sent_at`` marks the mail.
        create table notices (
            id integer primary key,
            key text not null unique,
            kind text not null,
            workflow text not null default '',
            occurrence text not null default '',
            step text not null default '',
            reason text not null default '',
            detail text not null default '',
            created_at text not null,
            sent_at text
        );
        create index notices_pending on notices (id) where sent_at is null;
        -- Mail that a person should read (a reply to a digest, an unknown sender, an
        -- unreadable answer): the desk's daily mail lists each once.
        alter table inbound add column listed_at text;
        -- Refused commands: the staff are told at most once a day per sender.
        alter table commands add column notified_at text;
        """,
    )


def _notes(db: Database) -> None:
    """Which stand-up notes showed each answer: every answer is in exactly one."""
    _script(db, "alter table inbound add column noted_at text;")


def _command_signatures(db: Database) -> None:
    """The DKIM signatures a command was obeyed under: the same signed command is obeyed once."""
    _script(
        db,
        """
        alter table commands add column signature text;
        create index commands_signature on commands (signature) where signature is not null;
        """,
    )


def _caches(db: Database) -> None:
    """What is kept only to start faster: public holidays as the holidays package gave them
    (a year of a region at a time), and templates compiled by jinja2 (keyed by their
    source's checksum)."""
    _script(
        db,
        """
        create table holiday_years (
            country text not null,
            subdivision text not null,
            year integer not null,
            computed_at text not null,
            primary key (country, subdivision, year)
        );
        create table holidays (
            country text not null,
            subdivision text not null,
            day text not null,
            name text not null,
            primary key (country, subdivision, day)
        );
        create table compiled_templates (
            key text primary key,
            checksum text not null,
            code blob not null
        );
        """,
    )


def _attendance(db: Database) -> None:
    """Occurrences of recurring events (``recurrence_id``: one row per UID and RECURRENCE-ID)
    and the attendees' answers to invitations (iMIP replies), per occurrence.

    SQLite cannot drop the old ``unique (uid)``: ``events`` is rebuilt, and with it
    ``event_changes`` that refers to it (dropped first, so no reference is left dangling).
    """
    _script(
        db,
        """
        create table events_new (
            id text primary key,
            uid text not null,
            recurrence_id text not null default '',
            kind text not null,
            title text not null,
            starts text not null,
            ends text not null,
            all_day integer not null default 0,
            place text not null default '',
            theme text not null default '',
            agenda text not null default '',
            audience text not null,
            source text not null,
            status text not null default 'confirmed' check (status in ('confirmed', 'cancelled')),
            sequence integer not null default 0,
            fingerprint text not null,
            updated_at text not null,
            unique (uid, recurrence_id)
        );
        insert into events_new (id, uid, kind, title, starts, ends, all_day, place, theme,
            agenda, audience, source, status, sequence, fingerprint, updated_at)
            select id, uid, kind, title, starts, ends, all_day, place, theme, agenda, audience,
            source, status, sequence, fingerprint, updated_at from events;
        create table event_changes_new (
            id integer primary key,
            event text not null references events_new (id),
            sequence integer not null,
            change text not null,
            detail text not null,
            created_at text not null,
            notified_at text
        );
        insert into event_changes_new select * from event_changes;
        drop table event_changes;
        drop table events;
        alter table events_new rename to events;
        alter table event_changes_new rename to event_changes;
        create index events_starts on events (starts);
        -- Every answer to an invitation, kept; the latest (by the reply's date) of an
        -- attendee counts, unless a change of time reset the answers (``reset``).
        create table attendance (
            id integer primary key,
            event text not null references events (id),
            attendee text not null,
            partstat text not null check (partstat in ('accepted', 'declined', 'tentative')),
            comment text not null default '',
            replied_at text not null,
            message integer references messages (id),
            invited integer not null,
            reset integer not null default 0
        );
        create index attendance_event on attendance (event, attendee);
        """,
    )


def _absences(db: Database) -> None:
    """Who is away, and through which day: from an out-of-office reply's return date or a
    member's own mail ("absent jusqu'au…"); a member's "de retour" cancels theirs."""
    _script(
        db,
        """
        create table absences (
            id integer primary key,
            address text not null,
            first_day text,
            last_day text not null,
            source text not null check (source in ('auto_reply', 'declared')),
            message integer,
            created_at text not null,
            cancelled_at text
        );
        create index absences_address on absences (address);
        create index absences_last_day on absences (last_day) where cancelled_at is null;
        """,
    )


def _outbox_by_occurrence(db: Database) -> None:
    """The outbox looked up by occurrence (who was asked, who was invited, a step's mail)
    without reading every row: a year of a 100-défi programme is 20,000 rows and 170 MB,
    and such a lookup took 25-31 ms, 0.2 ms with the index."""
    _script(db, "create index outbox_occurrence on outbox (occurrence, workflow, step);")


MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = [
    ("0001_mailbox", _mailbox),
    ("0002_workflows", _workflows),
    ("0003_events_and_alias", _events_and_alias),
    ("0004_delivery", _delivery),
    ("0005_holds", _holds),
    ("0006_notes", _notes),
    ("0007_command_signatures", _command_signatures),
    ("0008_caches", _caches),
    ("0009_attendance", _attendance),
    ("0010_absences", _absences),
    ("0011_outbox_by_occurrence", _outbox_by_occurrence),
]
