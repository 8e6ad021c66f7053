"""Running one step of one occurrence: who receives it, rendering, and queuing.

The mails of a step and the record that the step ran are committed in one transaction:
either the step happened (its mails are in the outbox) or it did not, whatever crashes.
A step replayed anyway queues nothing new, the outbox keys being the same.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlite_utils

from ..config import Config
from ..sending import invitation, notices, outbox, tokens
from ..sending.outbox import Outgoing, iso
from ..sending.render import Attachment, Renderer, build_message
from ..store.db import transaction
from . import digest
from .events import Event
from .occurrences import due_at, nominal_day, occurrence_day
from .roster import (
    Defi,
    Roster,
    Staff,
    defi_respondent,
    person_respondent,
    respondent_info,
    staff_respondent,
    stored_roster,
)
from .workflow import Step, Workflow, reads_answers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipient:
    """Who one mail goes to: a défi (all its members), a staff member, a list, the staff."""

    id: str  # "d-<défi id>", "s-<staff hash>", "p-<address hash>", "cohort", "alias", "staff"
    to: tuple[str, ...]
    language: str
    defi: Defi | None = None
    person: Staff | None = None
    name: str = ""


@dataclass(frozen=True)
class StepRun:
    workflow: str
    occurrence: str
    step: str
    status: str  # done, late, skipped, or held (not recorded: tried again next tick)
    queued: int = 0
    note: str = ""


@dataclass(frozen=True)
class Answer:
    """An answer just attributed, as the receipt needs it."""

    workflow: Workflow
    occurrence: str
    respondent: str
    sender: str
    from_name: str
    message: int
    data: dict[str, Any]
    late: bool


@dataclass(frozen=True)
class Occurrence:
    workflow: Workflow
    id: str
    day: dt.date
    event: Event | None = None


def answered(db: sqlite_utils.Database, workflow: str, occurrence: str) -> set[str]:
    """The respondents with a counted answer for an occurrence."""
    rows = db.execute(
        "select distinct respondent from inbound where kind = 'answer' and status = 'counted'"
        " and workflow = ? and occurrence = ?",
        [workflow, occurrence],
    )
    return {row[0] for row in rows}


def recipients(
    db: sqlite_utils.Database, config: Config, occ: Occurrence, step: Step, audience: str
) -> list[Recipient]:
    language = occ.workflow.language or config.language
    roster = stored_roster(db)
    if audience == "each_defi":
        found = [
            Recipient(defi_respondent(d.id), d.addresses, d.language or language, defi=d)
            for d in roster.defis
            if d.active_on(occ.day) and d.members
        ]
    elif audience == "each_staff":
        found = [
            Recipient(staff_respondent(s.address), (s.address,), language, person=s)
            for s in roster.staff
        ]
    elif audience == "attendees":
        return _attendees(roster, occ, language)
    elif audience == "staff":
        staff = tuple(s.address for s in roster.staff) or (config.addresses.alias,)
        return [Recipient("staff", staff, language)]
    else:
        address = config.addresses.cohort if audience == "cohort" else config.addresses.alias
        return [Recipient(audience, (address,), language)]
    if step.only:
        done = answered(db, occ.workflow.name, occ.id)
        found = [r for r in found if (r.id in done) == (step.only == "answered")]
    return found


def _attendees(roster: Roster, occ: Occurrence, language: str) -> list[Recipient]:
    """One recipient per person of the event's audience, in their défi's language."""
    assert occ.event is not None
    languages = {m.address: d.language for d in roster.defis for m in d.members if d.language}
    return [
        Recipient(
            person_respondent(address), (address,), languages.get(address) or language, name=name
        )
        for address, name in roster.audience(occ.event.audience, occ.day)
    ]


def base_context(
    config: Config, occ: Occurrence, due: dt.datetime, now: dt.datetime, late: bool
) -> dict[str, Any]:
    tz = config.timezone
    workflow = occ.workflow
    return {
        "workflow": {"name": workflow.name, "title": workflow.title},
        "occurrence": occ.id,
        "day": occ.day,
        "week": occ.day.isocalendar()[1],
        "deadline": workflow.deadline,
        "due": due.astimezone(tz),
        "now": now.astimezone(tz),
        "late": late,
        "programme": {
            "name": config.addresses.sender_name,
            "alias": config.addresses.alias,
            "cohort": config.addresses.cohort,
        },
        "sections": list(workflow.collect.section_keys) if workflow.collect else [],
        "times": {s.id: s.at for s in workflow.steps},
        "event": occ.event.as_context(tz) if occ.event else None,
    }


def _recipient_context(recipient: Recipient) -> dict[str, Any]:
    defi, person = recipient.defi, recipient.person
    who = None
    if defi is not None:
        who = {
            "id": defi.id, "name": defi.name, "host": defi.host, "kind": "defi",
            "members": [{"address": m.address, "name": m.name} for m in defi.members],
        }  # fmt: skip
    elif person is not None:
        who = {
            "id": recipient.id, "name": person.name or person.address, "host": person.role,
            "kind": "staff", "members": [{"address": person.address, "name": person.name}],
        }  # fmt: skip
    return {
        "language": recipient.language, "recipient": recipient.id, "who": who, "defi": who,
        "name": recipient.name or (who["name"] if who else ""),
    }  # fmt: skip


def build_mails(
    db: sqlite_utils.Database,
    config: Config,
    renderer: Renderer,
    secret: str,
    occ: Occurrence,
    step: Step,
    audience: str,
    context: dict[str, Any],
    now: dt.datetime,
) -> list[Outgoing]:
    """Render the step's mail for each recipient (raises ``TemplateError`` before queuing)."""
    mails = []
    for recipient in recipients(db, config, occ, step, audience):
        extra, parts = _personal(db, config, occ, step, recipient, now)
        variables = context | _recipient_context(recipient) | extra | {"step": step.id}
        rendered = renderer.render(step.template, recipient.language, variables)
        token = tokens.Token(occ.workflow.name, occ.id, step.id, recipient.id)
        message_id = tokens.message_id(secret, token, config.addresses.message_id_domain)
        raw = build_message(
            rendered,
            sender=config.addresses.sender,
            sender_name=config.addresses.sender_name,
            to=list(recipient.to),
            reply_to=config.addresses.reply_to,
            message_id=message_id,
            date=now.astimezone(config.timezone),
            attachments=parts,
        )
        mails.append(
            Outgoing(
                key=f"{occ.workflow.name}:{occ.id}:{step.id}:{recipient.id}",
                workflow=occ.workflow.name,
                occurrence=occ.id,
                step=step.id,
                recipient=recipient.id,
                to=recipient.to,
                sender=config.addresses.sender,
                message_id=message_id,
                subject=rendered.subject,
                raw=raw,
            )
        )
    return mails


def change_mails(
    db: sqlite_utils.Database, config: Config, renderer: Renderer, secret: str,
    workflow: Workflow, event: Event, change: str, detail: str, now: dt.datetime,
) -> list[Outgoing]:  # fmt: skip
    """The update (or cancellation) of an event already announced by ``workflow``, to its
    attendees, with the event's current sequence."""
    template = workflow.cancel_template if change == "cancelled" else workflow.update_template
    kinds = workflow.schedule.kinds
    if workflow.schedule.every != "event" or not template or (kinds and event.kind not in kinds):
        return []
    occ = Occurrence(workflow, f"ev-{event.id}", event.local_day(config.timezone), event)
    announced = db.execute(
        "select 1 from runs where workflow = ? and occurrence = ? and status != 'skipped'",
        [workflow.name, occ.id],
    ).fetchone()
    if not announced:
        return []  # the next reminder will carry the new details
    step = Step(f"{change}{event.sequence}", now.time(), "invite", template, "attendees")
    context = base_context(config, occ, now, now, False)
    context["change"] = {"kind": change, "detail": detail}
    return build_mails(db, config, renderer, secret, occ, step, "attendees", context, now)


def acknowledgement(
    db: sqlite_utils.Database,
    config: Config,
    renderer: Renderer,
    secret: str,
    answer: Answer,
    now: dt.datetime,
) -> Outgoing:
    """The receipt for one answer, to its sender: what was understood, and how to correct it."""
    workflow = answer.workflow
    day = occurrence_day(workflow.schedule, answer.occurrence) or nominal_day(
        workflow.schedule, answer.occurrence
    )
    roster = stored_roster(db)
    defi = next((d for d in roster.defis if defi_respondent(d.id) == answer.respondent), None)
    language = (defi.language if defi else None) or workflow.language or config.language
    context = base_context(config, Occurrence(workflow, answer.occurrence, day), now, now, False)
    who = respondent_info(roster, answer.respondent)
    context |= {
        "language": language, "recipient": answer.respondent, "who": who, "defi": who,
        "answer": answer.data, "late_answer": answer.late, "from_name": answer.from_name,
    }  # fmt: skip
    rendered = renderer.render(workflow.acknowledge, language, context)
    step = f"ack{answer.message}"
    token = tokens.Token(workflow.name, answer.occurrence, step, answer.respondent)
    message_id = tokens.message_id(secret, token, config.addresses.message_id_domain)
    raw = build_message(
        rendered, sender=config.addresses.sender, sender_name=config.addresses.sender_name,
        to=[answer.sender], reply_to=config.addresses.reply_to, message_id=message_id,
        date=now.astimezone(config.timezone),
    )  # fmt: skip
    return Outgoing(
        f"{workflow.name}:{answer.occurrence}:{step}:{answer.respondent}", workflow.name,
        answer.occurrence, step, answer.respondent, (answer.sender,), config.addresses.sender,
        message_id, rendered.subject, raw,
    )  # fmt: skip


def _personal(
    db: sqlite_utils.Database,
    config: Config,
    occ: Occurrence,
    step: Step,
    recipient: Recipient,
    now: dt.datetime,
) -> tuple[dict[str, Any], tuple[Attachment, ...]]:
    """What differs per recipient: an invitation, or a défi's own stand-up notes."""
    if step.action == "invite" and occ.event is not None:
        method = "CANCEL" if occ.event.status == "cancelled" else "REQUEST"
        ics = invitation.calendar(
            occ.event, method=method, organizer=config.addresses.sender,
            organizer_name=config.addresses.sender_name, attendee=recipient.to[0],
            tz=config.timezone, stamp=now,
        )  # fmt: skip
        return {}, invitation.attachments(ics, method)
    if step.action == "notes" and occ.event is not None and recipient.defi is not None:
        return {"notes": standup_notes(db, config, step.source, recipient.id, now)}, ()
    return {}, ()


def standup_notes(
    db: sqlite_utils.Database, config: Config, source: str, respondent: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """A défi's answers to ``source`` shown in no stand-up notes yet, up to ``now``.

    Every answer is in exactly one set of notes, whenever it came: one that arrives after
    the notes of a session, before the session itself, is in the next session's.
    """
    latest: dict[str, dict[str, Any]] = {}
    for message, occurrence, received_at, data, _ in _unnoted(db, source, now, respondent):
        local = dt.datetime.fromisoformat(received_at).astimezone(config.timezone)
        latest[occurrence] = {
            "occurrence": occurrence, "received_at": local, "message": message,
            **json.loads(data),
        }  # fmt: skip
    return [latest[k] for k in sorted(latest)]


def _unnoted(
    db: sqlite_utils.Database, source: str, now: dt.datetime, respondent: str | None = None
) -> list[tuple[int, str, str, str, str]]:
    """(message, occurrence, received_at, data, respondent) of answers to ``source`` in no
    stand-up notes yet."""
    who, params = ("and respondent = ?", [respondent]) if respondent else ("", [])
    rows = db.execute(
        "select message, occurrence, received_at, data, respondent from inbound"
        " where kind = 'answer'"
        " and status in ('counted', 'late') and workflow = ? and noted_at is null"
        f" and received_at <= ? {who} order by received_at, message",
        [source, iso(now), *params],
    )
    return [tuple(r) for r in rows]


def help_context(
    db: sqlite_utils.Database, config: Config, workflow: Workflow, now: dt.datetime
) -> dict[str, Any]:
    """Help requests to the alias that no staff member answered within ``[help] after``."""
    roster = stored_roster(db)
    pending = []
    for sender, respondent, subject, received_at in db.execute(
        "select sender, respondent, subject, received_at from help_requests"
        " where answered_at is null and received_at <= ? order by received_at",
        [iso(now - workflow.help_after)],
    ):
        received = dt.datetime.fromisoformat(received_at).astimezone(config.timezone)
        who = respondent_info(roster, respondent)["name"] if respondent else ""
        pending.append({
            "sender": sender, "who": who, "subject": subject, "received_at": received,
            # Calendar days, as people count them: a request of Tuesday 10:00 read on
            # Friday 09:30 is three days old, not the 71 hours' two.
            "days": (now.astimezone(config.timezone).date() - received.date()).days,
        })  # fmt: skip
    return {"help_requests": pending, "to_read": to_read(db, config)}


# What a person must read: mail that is nobody's answer and no command. Automatic mail
# (out-of-office replies, bounces) and staff's own mail are not listed.
_TO_READ = (
    "(i.kind in ('reply', 'unknown_sender', 'error', 'unreadable')"
    " or (i.kind = 'answer' and i.status in ('non_member', 'ambiguous', 'unreadable')))"
)


def to_read(
    db: sqlite_utils.Database, config: Config, *, listed: bool = False
) -> list[dict[str, Any]]:
    """Human mail no step shows anyone: replies to a digest or a receipt, unknown senders,
    non-members' answers, unreadable messages. Those not listed yet, or (``listed``) all."""
    roster = stored_roster(db)
    where = "" if listed else " and i.listed_at is null"
    rows = db.execute(
        "select i.message, i.kind, i.status, i.sender, i.respondent, i.received_at,"
        " coalesce(p.subject, ''), coalesce(p.from_name, ''), i.data from inbound i"
        f" left join parsed p on p.message = i.message where {_TO_READ}{where}"
        " order by i.received_at, i.message"
    ).fetchall()
    found = []
    for message, kind, status, sender, respondent, received, subject, name, data in rows:
        details = json.loads(data) if data else {}
        found.append({
            "message": message, "kind": kind, "status": status, "sender": sender or "",
            "name": name, "subject": subject,
            "received_at": dt.datetime.fromisoformat(received).astimezone(config.timezone),
            "defi": respondent_info(roster, respondent)["name"] if respondent else "",
            "reason": details.get("unreadable") or details.get("error") or "",
        })  # fmt: skip
    return found


@dataclass(frozen=True)
class Prepared:
    """A step's rendered mails, and what sending them shows for the first and last time."""

    mails: list[Outgoing]
    to_staff: bool = False
    listed: tuple[int, ...] = ()  # messages now listed to the staff for a person to read
    noted: tuple[int, ...] = ()  # answers now in stand-up notes


class Skip(StrEnum):
    """Why a due step sent nothing (``runs.reason``)."""

    EMPTY = "empty"  # nothing to say (unless_empty, no help request waiting)
    LATER_RAN = "later_ran"  # a later step of the occurrence already ran
    NOT_ASKED = "not_asked"  # the occurrence's request never went out
    HISTORY = "history"  # … because it was due before mailflow's first tick
    JUST_ASKED = "just_asked"  # the request went out in this very tick: no reminder yet
    MISSED = "missed"  # past its grace (mailflow was not running)
    BLIND = "blind"  # the mailbox could not be read until past its grace
    FAILED = "failed"  # could not be prepared until past its grace


# Skips the staff are told about: something they expected was not sent.
TOLD = (Skip.LATER_RAN, Skip.NOT_ASKED, Skip.MISSED, Skip.BLIND, Skip.FAILED)


def run_step(
    db: sqlite_utils.Database,
    config: Config,
    renderer: Renderer,
    secret: str,
    occ: Occurrence,
    step: Step,
    due: dt.datetime,
    now: dt.datetime,
    blind: str = "",
) -> StepRun:
    """Do one due step: skip it, hold it, or queue its mails, and record what happened.

    ``blind`` is why this tick could not read the mailbox ("" when it could): a step whose
    mail depends on what was received is then held, to run at a later tick within its
    grace, or skipped once its grace has passed.
    """
    late = now - due > step.grace
    skip = _skip_reason(db, config, occ, step, due, now, late, blind)
    if skip is not None:
        detail = blind if skip[0] is Skip.BLIND else ""
        return _record(db, occ, step, due, now, "skipped", skip[1], [], reason=skip[0],
                       detail=detail)  # fmt: skip
    if blind and reads_answers(step):
        note = f"held: the mailbox could not be read ({blind})"
        notices.record(db, _notice(notices.Kind.HELD, occ, step, "blind", blind), now)
        log.info("%s %s %s: %s", occ.workflow.name, occ.id, step.id, note)
        return StepRun(occ.workflow.name, occ.id, step.id, "held", 0, note)
    prepared = step_mails(db, config, renderer, secret, occ, step, due, now, late)
    if isinstance(prepared, str):
        return _record(db, occ, step, due, now, "skipped", prepared, [], reason=Skip.EMPTY)
    status, note = ("late", f"due at {iso(due)}, sent late") if late else ("done", "")
    return _record(db, occ, step, due, now, status, note, prepared.mails, prepared.to_staff,
                   listed=prepared.listed, noted=prepared.noted)  # fmt: skip


def step_mails(
    db: sqlite_utils.Database, config: Config, renderer: Renderer, secret: str,
    occ: Occurrence, step: Step, due: dt.datetime, now: dt.datetime, late: bool,
) -> Prepared | str:  # fmt: skip
    """The rendered mails of a step, or why there are none.

    Raises ``TemplateError`` before anything is queued. The preflight check renders
    every step through this same function, on a scratch database.
    """
    context = base_context(config, occ, due, now, late)
    audience = "staff" if late and step.when_late == "staff" else step.to
    if step.action == "digest":
        context |= digest.digest_context(db, occ.workflow, occ.id, occ.day, config.timezone)
        if step.unless_empty and not any(_has(context, k) for k in step.unless_empty):
            return "nothing to send: no " + ", no ".join(step.unless_empty)
    if step.action == "help":
        context |= help_context(db, config, occ.workflow, now)
        if not context["help_requests"] and not context["to_read"]:
            return "no help request waiting, no mail to read"
    mails = build_mails(db, config, renderer, secret, occ, step, audience, context, now)
    if step.action == "notes":
        asked = {m.recipient for m in mails}
        noted = tuple(r[0] for r in _unnoted(db, step.source, now) if r[4] in asked)
        return Prepared(mails, noted=noted)
    listed = tuple(m["message"] for m in context.get("to_read", ()))
    return Prepared(mails, audience == "staff", listed=listed)


def give_up(
    db: sqlite_utils.Database, occ: Occurrence, step: Step, due: dt.datetime, now: dt.datetime,
    error: str,
) -> StepRun:  # fmt: skip
    """Record that a step which could not be prepared until past its grace is not sent."""
    note = f"not sent: could not be prepared until past its grace ({error})"
    return _record(db, occ, step, due, now, "skipped", note, [], reason=Skip.FAILED, detail=error)


def _notice(
    kind: notices.Kind, occ: Occurrence, step: Step, reason: str, detail: str = ""
) -> notices.Notice:
    key = f"{kind}:{occ.workflow.name}:{occ.id}:{step.id}"
    return notices.Notice(key, kind, occ.workflow.name, occ.id, step.id, reason, detail)


def failed_notice(occ: Occurrence, step: Step, error: str) -> notices.Notice:
    return _notice(notices.Kind.FAILED, occ, step, "failed", error)


def _before_install(db: sqlite_utils.Database, moment: dt.datetime) -> bool:
    """Occurrences due before mailflow's first tick are history, not missed work."""
    row = db.execute("select value from settings where key = 'installed_at'").fetchone()
    return row is not None and moment < dt.datetime.fromisoformat(row[0])


def _has(context: dict[str, Any], key: str) -> bool:
    return bool(context["by_key"].get(key) if key in context["by_key"] else context.get(key))


def _ran(db: sqlite_utils.Database, occ: Occurrence, step: Step) -> str | None:
    """When a step of the occurrence ran and sent its mail (None: not, or skipped)."""
    row = db.execute(
        "select ran_at from runs where workflow = ? and occurrence = ? and step = ?"
        " and status != 'skipped'",
        [occ.workflow.name, occ.id, step.id],
    ).fetchone()
    return str(row[0]) if row else None


def _skip_reason(
    db: sqlite_utils.Database, config: Config, occ: Occurrence, step: Step, due: dt.datetime,
    now: dt.datetime, late: bool, blind: str,
) -> tuple[Skip, str] | None:  # fmt: skip
    later = db.execute(
        "select step from runs where workflow = ? and occurrence = ? and due_at > ? limit 1",
        [occ.workflow.name, occ.id, iso(due)],
    ).fetchone()
    if later:
        return Skip.LATER_RAN, f"missed: step {later[0]}, due later, already ran"
    opening = occ.workflow.opening
    if opening is not None and step is not opening:
        asked_at = _ran(db, occ, opening)
        if asked_at is None:
            note = f"not sent: the {opening.id} step of {occ.id} never went out"
            opened = due_at(opening, occ.day, config.timezone, occ.workflow.schedule)
            return (Skip.HISTORY if _before_install(db, opened) else Skip.NOT_ASKED), note
        if step.only and asked_at == iso(now):
            return Skip.JUST_ASKED, f"not sent: {opening.id} went out in this same tick"
    if blind and late and reads_answers(step):
        return Skip.BLIND, f"not sent: the mailbox could not be read until past its grace ({blind})"
    if late and step.when_late == "skip":
        return Skip.MISSED, f"missed: due at {iso(due)}, past its grace of {step.grace}"
    return None


def _record(
    db: sqlite_utils.Database,
    occ: Occurrence,
    step: Step,
    due: dt.datetime,
    now: dt.datetime,
    status: str,
    note: str,
    mails: list[Outgoing],
    to_staff: bool = False,
    *,
    reason: Skip | None = None,
    detail: str = "",
    listed: tuple[int, ...] = (),
    noted: tuple[int, ...] = (),
) -> StepRun:
    queued = 0
    with transaction(db):
        # A missed list of waiting help requests is not lost: the next one carries them.
        if reason in TOLD and step.action != "help":
            notices.record(db, _notice(notices.Kind.SKIPPED, occ, step, str(reason), detail), now)
        for mail in mails:
            queued += outbox.queue(db, mail, now)
        for column, messages in (("listed_at", listed), ("noted_at", noted)):
            marks = ",".join("?" * len(messages))
            if messages and status != "skipped":
                db.execute(
                    f"update inbound set {column} = ? where message in ({marks})",
                    [iso(now), *messages],
                )
        if step.action == "digest" and status != "skipped":
            digest.mark_shown(db, occ.workflow.name, occ.id, to_staff)
            if to_staff:
                digest.mark_flags_reported(db, occ.id)
        db.execute(
            "insert into runs (workflow, occurrence, step, due_at, ran_at, status, note, reason)"
            " values (?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
            [occ.workflow.name, occ.id, step.id, iso(due), iso(now), status, note,
             str(reason or "")],
        )  # fmt: skip
    log.info(
        "%s %s %s: %s, %d mails queued %s", occ.workflow.name, occ.id, step.id, status, queued, note
    )
    return StepRun(occ.workflow.name, occ.id, step.id, status, queued, note)
