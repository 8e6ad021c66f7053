"""What a digest shows: the answers of one occurrence, arranged for the templates.

The context is generic: ``answers`` (one block per respondent that answered, a défi or a
staff member, the latest answer before the digest winning), ``by_key`` (for every section
and field key, the non-empty contents, so a template can list the needs first),
``missing`` (respondents asked that gave no news), ``away`` (those asked whose people
are all away on the day, with ``until``, the last day of the first absence to end: not
"without news"), ``late_answers`` (answers that
arrived after an earlier digest and were not shown yet) and ``flags`` (addresses the
staff should look at). Which key is shown first and how is the templates' business.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from ..store import desk, inbound, outgoing
from ..store.db import Database
from ..store.states import Respondent, Status
from .absences import away_on, away_until
from .events import upcoming
from .roster import respondent_info, stored_roster
from .workflow import Workflow

UPCOMING = dt.timedelta(weeks=4)  # how far ahead a digest lists the key dates


@dataclass(frozen=True)
class Block:
    who: dict[str, str]
    sections: dict[str, str | None]
    fields: dict[str, str | None]
    received_at: str
    occurrence: str
    sender: str
    from_name: str
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        # ``defi`` names the respondent too, so that défi-centred templates read naturally.
        return {
            "who": self.who, "defi": self.who, "sections": self.sections, "fields": self.fields,
            "received_at": self.received_at, "occurrence": self.occurrence,
            "sender": self.sender, "from_name": self.from_name, "text": self.text,
        }  # fmt: skip


def digest_context(
    db: Database,
    workflow: Workflow,
    occurrence: str,
    day: dt.date,
    tz: ZoneInfo,
) -> dict[str, Any]:
    roster = stored_roster(db)
    asked_ids = outgoing.asked(db, workflow.name, occurrence) or [
        Respondent.defi(d.id) for d in roster.defis if d.active_on(day)
    ]
    answers = inbound.latest_answers(db, workflow.name, occurrence)

    def block(respondent: str, answer: dict[str, Any], occ: str) -> Block:
        who = respondent_info(roster, respondent)
        return Block(
            who, answer["sections"], answer["fields"], answer["received_at"], occ,
            answer["sender"], answer.get("from_name", ""), answer.get("text", ""),
        )  # fmt: skip

    blocks = sorted(
        (block(r, a, occurrence) for r, a in answers.items()), key=lambda b: b.who["name"].lower()
    )
    late = [block(r, a, occ) for occ, r, a in inbound.late_answers(db, workflow.name, occurrence)]
    keys = workflow.collect.section_keys + workflow.collect.field_keys if workflow.collect else ()
    by_key = {
        key: [
            {"who": b.who, "defi": b.who, "text": b.sections.get(key) or b.fields.get(key)}
            for b in blocks
            if b.sections.get(key) or b.fields.get(key)
        ]
        for key in keys
    }
    unreadable = set(inbound.latest_answers(db, workflow.name, occurrence, Status.UNREADABLE))
    people_away = away_on(db, day)
    silent = {r: away_until(db, r, people_away) for r in asked_ids if r not in answers}
    missing = sorted(
        (
            {**respondent_info(roster, r), "unreadable": r in unreadable}
            for r, until in silent.items()
            if until is None
        ),
        key=lambda who: str(who["name"]).lower(),
    )
    away = sorted(
        ({**respondent_info(roster, r), "until": until} for r, until in silent.items() if until),
        key=lambda who: str(who["name"]).lower(),
    )
    return {
        "answers": [b.as_dict() for b in blocks],
        "by_key": by_key,
        "missing": missing,
        "away": away,
        "late_answers": [b.as_dict() for b in late],
        "asked": len(asked_ids),
        "answered": len(blocks),
        "all_answered": not missing and not away and bool(asked_ids),
        "flags": open_flags(db),
        "events": _coming_events(db, day, tz),
        "announcements": _announcements(db, workflow.name, occurrence),
    }


def _coming_events(db: Database, day: dt.date, tz: ZoneInfo) -> list[dict[str, Any]]:
    """Events of the coming weeks, for the key dates of a digest."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    return [e.as_context(tz) for e in upcoming(db, start, start + UPCOMING)]


def _announcements(db: Database, workflow: str, occurrence: str) -> list[dict[str, str]]:
    rows = desk.announcements(db, workflow, occurrence)
    return [{"text": r[0], "author": r[1], "created_at": r[2]} for r in rows]


def open_flags(db: Database) -> list[dict[str, str]]:
    rows = desk.open_flags(db)
    return [{"address": r[0], "kind": r[1], "detail": r[2], "created_at": r[3]} for r in rows]


def mark_shown(db: Database, workflow: str, occurrence: str, to_staff: bool) -> None:
    """Late answers and announcements shown to the cohort by this digest are not shown again."""
    if to_staff:
        return
    inbound.mark_late_shown(db, workflow, occurrence)
    desk.mark_announcements_shown(db, workflow, occurrence)
