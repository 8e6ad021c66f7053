"""Queries of events and their change history (``events``, ``event_changes``).

An event is stored as a row of ``COLUMNS``, in that order, with its fingerprint; the
programme's ``Event`` is built from it in ``programme.events``. Instants are ISO 8601 in
UTC, so that SQL compares them in time order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .db import Database, iso, now_utc
from .states import EventStatus

COLUMNS = (
    "id, uid, kind, title, starts, ends, all_day, place, theme, agenda, audience, source,"
    " status, sequence, recurrence_id"
)
Row = tuple[object, ...]


def _select(db: Database, where: str, params: Sequence[object]) -> list[Row]:
    rows = db.execute(f"select {COLUMNS} from events where {where} order by starts", params)
    return [tuple(r) for r in rows]


def event_row(db: Database, event_id: str) -> Row | None:
    found = _select(db, "id = ?", [event_id])
    return found[0] if found else None


def every_event(db: Database) -> list[Row]:
    """Every event, past and cancelled ones too, by start."""
    return _select(db, "1", [])


def confirmed(
    db: Database, *, sources: Sequence[str] | None = None,
    ends_after: str | None = None, starts_before: str | None = None,
) -> list[Row]:  # fmt: skip
    """Confirmed events (of ``sources``; ending after, starting before an instant), by start."""
    where = ["status = ?"]
    params: list[object] = [EventStatus.CONFIRMED]
    if sources is not None:
        where.insert(0, f"source in ({','.join('?' * len(sources))})")
        params[:0] = list(sources)
    if ends_after is not None:
        where.append("ends > ?")
        params.append(ends_after)
    if starts_before is not None:
        where.append("starts < ?")
        params.append(starts_before)
    return _select(db, " and ".join(where), params)


def save_event(db: Database, row: Row, fingerprint: str) -> None:
    """Insert or update an event from its row of ``COLUMNS``."""
    db.execute(
        f"insert into events ({COLUMNS}, fingerprint, updated_at)"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " on conflict (id) do update set uid = excluded.uid, kind = excluded.kind,"
        " title = excluded.title, starts = excluded.starts, ends = excluded.ends,"
        " all_day = excluded.all_day, place = excluded.place, theme = excluded.theme,"
        " agenda = excluded.agenda, audience = excluded.audience, source = excluded.source,"
        " status = excluded.status, sequence = excluded.sequence,"
        " recurrence_id = excluded.recurrence_id,"
        " fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
        [*row, fingerprint, now_utc()],
    )


def record_change(db: Database, event_id: str, sequence: int, change: str, detail: str) -> None:
    db.execute(
        "insert into event_changes (event, sequence, change, detail, created_at)"
        " values (?, ?, ?, ?, ?)",
        [event_id, sequence, change, detail, now_utc()],
    )


def unnotified_changes(db: Database) -> list[tuple[int, str, int, str, str]]:
    """(id, event, sequence, change, detail) of changes nobody was told of yet, in order."""
    return db.execute(
        "select id, event, sequence, change, detail from event_changes"
        " where notified_at is null order by id"
    ).fetchall()


def mark_notified(db: Database, ids: Sequence[int], now: dt.datetime) -> None:
    marks = ",".join("?" * len(ids))
    db.execute(f"update event_changes set notified_at = ? where id in ({marks})", [iso(now), *ids])
