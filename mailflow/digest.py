"""What a digest shows: the answers of one occurrence, arranged for the templates.

The context is generic: ``answers`` (one block per défi that answered, the latest answer
before the digest winning), ``by_key`` (for every section and field key, the défis'
non-empty contents, so a template can list the needs first), ``missing`` (défis asked
that gave no news), ``late_answers`` (answers that arrived after an earlier digest and were not
shown yet) and ``flags`` (addresses the staff should look at). Which key is shown first
and how is the templates' business.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from .roster import stored_roster
from .workflow import Workflow


@dataclass(frozen=True)
class Block:
    defi: dict[str, str]
    sections: dict[str, str | None]
    fields: dict[str, str | None]
    received_at: str
    occurrence: str
    sender: str
    from_name: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "defi": self.defi, "sections": self.sections, "fields": self.fields,
            "received_at": self.received_at, "occurrence": self.occurrence,
            "sender": self.sender, "from_name": self.from_name,
        }  # fmt: skip


def _defi_info(defi: Any) -> dict[str, str]:
    return {"id": defi.id, "name": defi.name, "host": defi.host}


def asked_defis(db: sqlite_utils.Database, workflow: Workflow, occurrence: str) -> list[str]:
    """The défis that were sent this occurrence's request."""
    rows = db.execute(
        "select distinct recipient from outbox where workflow = ? and occurrence = ?"
        " and recipient like 'd-%'",
        [workflow.name, occurrence],
    )
    return [row[0][2:] for row in rows]


def latest_answers(
    db: sqlite_utils.Database, workflow: str, occurrence: str, status: str = "counted"
) -> dict[str, dict[str, Any]]:
    """The latest answer of each défi for an occurrence, by défi id."""
    rows = db.execute(
        "select defi, received_at, sender, data, message from inbound"
        " where kind = 'answer' and workflow = ? and occurrence = ? and status = ?"
        " order by received_at, message",
        [workflow, occurrence, status],
    )
    latest: dict[str, dict[str, Any]] = {}
    for defi, received_at, sender, data, _ in rows:
        latest[defi] = {"received_at": received_at, "sender": sender, **json.loads(data)}
    return latest


def _late(
    db: sqlite_utils.Database, workflow: str, occurrence: str
) -> list[tuple[str, str, dict[str, Any]]]:
    rows = db.execute(
        "select occurrence, defi, received_at, sender, data from inbound"
        " where kind = 'answer' and status = 'late' and workflow = ?"
        " and (shown_in is null or shown_in = ?) and occurrence != ? order by received_at, message",
        [workflow, occurrence, occurrence],
    )
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for occ, defi, received_at, sender, data in rows:
        latest[(occ, defi)] = {"received_at": received_at, "sender": sender, **json.loads(data)}
    return [(occ, defi, answer) for (occ, defi), answer in latest.items()]


def digest_context(
    db: sqlite_utils.Database, workflow: Workflow, occurrence: str, day: dt.date
) -> dict[str, Any]:
    roster = {d.id: d for d in stored_roster(db).defis}
    asked = asked_defis(db, workflow, occurrence) or [d for d in roster if roster[d].active_on(day)]
    answers = latest_answers(db, workflow.name, occurrence)

    def block(defi_id: str, answer: dict[str, Any], occ: str) -> Block:
        defi = roster.get(defi_id)
        info = _defi_info(defi) if defi else {"id": defi_id, "name": defi_id, "host": ""}
        return Block(info, answer["sections"], answer["fields"], answer["received_at"], occ,
                     answer["sender"], answer.get("from_name", ""))  # fmt: skip

    blocks = sorted(
        (block(d, a, occurrence) for d, a in answers.items()), key=lambda b: b.defi["name"].lower()
    )
    late = [block(d, a, occ) for occ, d, a in _late(db, workflow.name, occurrence)]
    keys = workflow.collect.section_keys + workflow.collect.field_keys if workflow.collect else ()
    by_key = {
        key: [
            {"defi": b.defi, "text": b.sections.get(key) or b.fields.get(key)}
            for b in blocks
            if b.sections.get(key) or b.fields.get(key)
        ]
        for key in keys
    }
    missing = sorted(
        (_defi_info(roster[d]) for d in asked if d not in answers and d in roster),
        key=lambda d: d["name"].lower(),
    )
    return {
        "answers": [b.as_dict() for b in blocks],
        "by_key": by_key,
        "missing": missing,
        "late_answers": [b.as_dict() for b in late],
        "asked": len(asked),
        "answered": len(blocks),
        "all_answered": not missing and bool(asked),
        "flags": open_flags(db),
    }


def open_flags(db: sqlite_utils.Database) -> list[dict[str, str]]:
    rows = db.execute(
        "select address, kind, detail, created_at from address_flags where reported_in is null"
        " order by id"
    )
    return [{"address": r[0], "kind": r[1], "detail": r[2], "created_at": r[3]} for r in rows]


def mark_shown(db: sqlite_utils.Database, workflow: str, occurrence: str) -> None:
    """Late answers shown by this occurrence's digest are not shown again."""
    db.execute(
        "update inbound set shown_in = ? where kind = 'answer' and status = 'late'"
        " and workflow = ? and occurrence != ? and shown_in is null",
        [occurrence, workflow, occurrence],
    )


def mark_flags_reported(db: sqlite_utils.Database, occurrence: str) -> None:
    db.execute("update address_flags set reported_in = ? where reported_in is null", [occurrence])
