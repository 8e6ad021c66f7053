"""Queries of the persisted schedule: what each step of each occurrence did (``runs``),
occurrences skipped by the staff, the install instant, and the notices owed to the staff."""

from __future__ import annotations

import datetime as dt

from .db import Database, iso, transaction
from .states import Run


def ran_at(db: Database, workflow: str, occurrence: str, step: str) -> str | None:
    """When a step of an occurrence ran and sent its mail; None when it did not (or skipped)."""
    row = db.execute(
        "select ran_at from runs where workflow = ? and occurrence = ? and step = ?"
        " and status != ?",
        [workflow, occurrence, step, Run.SKIPPED],
    ).fetchone()
    return str(row[0]) if row else None


def later_step(db: Database, workflow: str, occurrence: str, due: dt.datetime) -> str | None:
    """A step of the occurrence due after ``due`` that already ran (or was skipped)."""
    row = db.execute(
        "select step from runs where workflow = ? and occurrence = ? and due_at > ? limit 1",
        [workflow, occurrence, iso(due)],
    ).fetchone()
    return str(row[0]) if row else None


def any_ran(db: Database, workflow: str, occurrence: str, steps: tuple[str, ...] = ()) -> bool:
    """Whether any step of an occurrence (or any of ``steps``) ran and sent its mail."""
    marks = ",".join("?" * len(steps))
    which = f" and step in ({marks})" if steps else ""
    row = db.execute(
        f"select 1 from runs where workflow = ? and occurrence = ? and status != ?{which}",
        [workflow, occurrence, Run.SKIPPED, *steps],
    ).fetchone()
    return row is not None


def started(db: Database, workflow: str, occurrence: str) -> bool:
    row = db.execute(
        "select count(*) from runs where workflow = ? and occurrence = ?", [workflow, occurrence]
    ).fetchone()
    return bool(row[0])


def record_run(
    db: Database, workflow: str, occurrence: str, step: str, due: dt.datetime,
    now: dt.datetime, status: str, note: str, reason: str,
) -> None:  # fmt: skip
    db.execute(
        "insert into runs (workflow, occurrence, step, due_at, ran_at, status, note, reason)"
        " values (?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
        [workflow, occurrence, step, iso(due), iso(now), status, note, reason],
    )


def runs_of(db: Database, workflow: str, occurrence: str) -> list[tuple[str, str, str, str, str]]:
    """(step, status, ran_at, reason, note) of an occurrence, in due order."""
    return [
        tuple(r)
        for r in db.execute(
            "select step, status, ran_at, reason, note from runs where workflow = ?"
            " and occurrence = ? order by due_at",
            [workflow, occurrence],
        )
    ]


def done_since(db: Database, since: dt.datetime) -> set[tuple[str, str, str]]:
    """(workflow, occurrence, step) of every run due since ``since``."""
    return {
        (w, o, s)
        for w, o, s in db.execute(
            "select workflow, occurrence, step from runs where due_at >= ?", [iso(since)]
        )
    }


def skipped_occurrences(db: Database) -> set[tuple[str, str]]:
    return {(w, o) for w, o in db.execute("select workflow, occurrence from skipped_occurrences")}


def skip_occurrence(
    db: Database, workflow: str, occurrence: str, reason: str, now: dt.datetime
) -> None:
    db.execute(
        "insert or replace into skipped_occurrences (workflow, occurrence, reason, created_at)"
        " values (?, ?, ?, ?)",
        [workflow, occurrence, reason, iso(now)],
    )


def setting(db: Database, key: str) -> str | None:
    row = db.execute("select value from settings where key = ?", [key]).fetchone()
    return str(row[0]) if row else None


def set_setting(db: Database, key: str, value: str, *, keep: bool = False) -> None:
    """Store a setting; with ``keep``, only when it has no value yet."""
    verb = "insert or ignore" if keep else "insert or replace"
    with transaction(db):
        db.execute(f"{verb} into settings (key, value) values (?, ?)", [key, value])


def clear_setting(db: Database, key: str) -> None:
    with transaction(db):
        db.execute("delete from settings where key = ?", [key])


def before_install(db: Database, moment: dt.datetime) -> bool:
    """Whether ``moment`` came before mailflow's first tick: occurrences then are history."""
    installed = setting(db, "installed_at")
    return installed is not None and moment < dt.datetime.fromisoformat(installed)


def record_notice(db: Database, fields: tuple[str, ...], now: dt.datetime) -> bool:
    """Keep a notice (key, kind, workflow, occurrence, step, reason, detail) unless its key
    exists; True when it is new."""
    cursor = db.execute(
        "insert into notices (key, kind, workflow, occurrence, step, reason, detail, created_at)"
        " values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (key) do nothing",
        [*fields, iso(now)],
    )
    return bool(cursor.rowcount)


def pending_notices(db: Database) -> list[tuple[str, ...]]:
    """(id, key, kind, workflow, occurrence, step, reason, detail, created_at) not told yet."""
    return db.execute(
        "select id, key, kind, workflow, occurrence, step, reason, detail, created_at"
        " from notices where sent_at is null order by id"
    ).fetchall()


def notices_sent(db: Database, ids: list[int], now: dt.datetime) -> None:
    marks = ",".join("?" * len(ids))
    db.execute(f"update notices set sent_at = ? where id in ({marks})", [iso(now), *ids])
