"""What the staff must be told: a step held or skipped, a step that could not be prepared.

Any part of mailflow records a notice with a key naming what it is about; recording the
same key again does nothing, so a condition seen at every tick is told once. At the end
of a tick, the notices not told yet go to the staff in one mail (``system/notice``), in
the same transaction that marks them told.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..store import schedule
from ..store.db import Database, transaction
from ..store.outgoing import queue
from . import tokens

if TYPE_CHECKING:
    from ..config import Config
    from ..programme.workflow import Workflow
    from .compose import Mailer


class Kind(StrEnum):
    HELD = "held"  # waiting for the mailbox to be read
    SKIPPED = "skipped"  # not sent, for good
    FAILED = "failed"  # could not be prepared (a template, a bug); tried again until its grace
    BLIND = "blind"  # the mailbox has not been readable for a while


@dataclass(frozen=True)
class Notice:
    key: str
    kind: Kind
    workflow: str = ""
    occurrence: str = ""
    step: str = ""
    reason: str = ""
    detail: str = ""


def record(db: Database, notice: Notice, now: dt.datetime) -> bool:
    """Keep a notice for the staff unless one with its key exists; True when it is new."""
    fields = (notice.key, str(notice.kind), notice.workflow, notice.occurrence, notice.step,
              notice.reason, notice.detail)  # fmt: skip
    return schedule.record_notice(db, fields, now)


def pending(db: Database) -> list[tuple[int, Notice, str]]:
    rows = schedule.pending_notices(db)
    return [(int(r[0]), Notice(r[1], Kind(r[2]), *r[3:8]), r[8]) for r in rows]


def _item(
    db: Database, notice: Notice, created_at: str,
    workflows: dict[str, Workflow], config: Config,
) -> dict[str, Any]:  # fmt: skip
    """What the template shows of a notice: names and local times, never internal keys."""
    from ..programme.events import get_event
    from ..programme.occurrences import due_at, nominal_day, occurrence_day

    tz = config.timezone
    item: dict[str, Any] = {
        "kind": str(notice.kind), "reason": notice.reason, "detail": notice.detail,
        "title": notice.workflow, "day": None, "due": None, "until": None, "step": None,
        "event": None, "created_at": dt.datetime.fromisoformat(created_at).astimezone(tz),
    }  # fmt: skip
    workflow = workflows.get(notice.workflow)
    if workflow is None:
        return item
    item["title"] = workflow.title
    day = None
    if notice.occurrence.startswith("ev-"):
        event = get_event(db, notice.occurrence[3:])
        if event is not None:
            item["event"] = event.as_context(tz)
            day = event.local_day(tz)
    elif notice.occurrence:
        try:
            day = occurrence_day(workflow.schedule, notice.occurrence) or nominal_day(
                workflow.schedule, notice.occurrence
            )
        except ValueError:
            day = None
    item["day"] = day
    step = next((s for s in workflow.steps if s.id == notice.step), None)
    if step is not None:
        from ..programme.kinds import kind_of

        item["step"] = {"id": step.id, "role": kind_of(step).role(step)}
        if day is not None:
            item["due"] = due_at(step, day, tz, workflow.schedule)
            item["until"] = item["due"] + step.grace
    return item


def _grouped(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Skipped steps of one occurrence make one entry, with the first step's reason.

    What did not go out for a week reads as one line (the request, its reminders and its
    digest), its cause being that of the earliest step: the request missed explains the rest.
    """
    result: list[dict[str, Any]] = []
    by_occurrence: dict[tuple[str, object, object], dict[str, Any]] = {}
    for item in items:
        if item["kind"] != Kind.SKIPPED:
            result.append(item)
            continue
        key = (item["title"], item["day"], (item["event"] or {}).get("id"))
        group = by_occurrence.get(key)
        if group is None:
            group = by_occurrence[key] = item | {"steps": []}
            result.append(group)
        group["steps"].append({"step": item["step"], "due": item["due"]})
        earliest = min(group["steps"], key=lambda s: s["due"] or item["created_at"])
        if earliest["step"] is item["step"]:
            group.update(reason=item["reason"], detail=item["detail"], due=item["due"])
    for group in by_occurrence.values():
        group["steps"].sort(key=lambda s: s["due"] or group["created_at"])
    return result


def flush(db: Database, mailer: Mailer, workflows: list[Workflow], now: dt.datetime) -> bool:
    """Queue one mail to the staff with every notice not told yet; True when one was queued."""
    rows = pending(db)
    if not rows:
        return False
    config = mailer.config
    by_name = {w.name: w for w in workflows}
    items = _grouped([_item(db, n, created, by_name, config) for _, n, created in rows])
    local = now.astimezone(config.timezone)
    context = {
        "notices": items, "now": local, "mailbox": config.imap.username,
        "programme": {"name": config.addresses.sender_name, "alias": config.addresses.alias},
    }  # fmt: skip
    first = rows[0][0]
    token = tokens.Token("system", local.strftime("%Y%m%d"), f"notice{first}", "staff")
    mail = mailer.compose(token, mailer.staff(db), "system/notice", config.language, context, now,
                          reply_to=config.addresses.alias)  # fmt: skip
    with transaction(db):
        queue(db, mail, now)
        schedule.notices_sent(db, [r[0] for r in rows], now)
    return True
