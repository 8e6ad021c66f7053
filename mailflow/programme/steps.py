"""Running one step of one occurrence: who receives it, rendering, and queuing.

The mails of a step and the record that the step ran are committed in one transaction:
either the step happened (its mails are in the outbox) or it did not, whatever crashes.
A step replayed anyway queues nothing new, the outbox keys being the same.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..sending import notices, tokens
from ..store import inbound, outgoing, schedule
from ..store.db import Database, iso, transaction
from ..store.outgoing import Outgoing
from ..store.states import Change, Run
from .audiences import recipient_context, recipients
from .events import Event, rescheduled
from .kinds import Invite, kind_of
from .occurrences import due_at
from .workflow import Step, Workflow, reads_answers

if TYPE_CHECKING:
    from ..sending.compose import Mailer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRun:
    workflow: str
    occurrence: str
    step: str
    status: Run  # done, late, skipped, or held (not recorded: tried again next tick)
    queued: int = 0
    note: str = ""


@dataclass(frozen=True)
class Occurrence:
    workflow: Workflow
    id: str
    day: dt.date
    event: Event | None = None


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


def build_mails(
    db: Database, mailer: Mailer, occ: Occurrence, step: Step, audience: str,
    context: dict[str, Any], now: dt.datetime,
) -> list[Outgoing]:  # fmt: skip
    """Compose the step's mail for each recipient (raises ``TemplateError`` before queuing)."""
    kind = kind_of(step)
    mails = []
    for recipient in recipients(db, mailer.config, occ, step, audience):
        extra, parts = kind.personal(db, mailer, occ, step, recipient, now)
        variables = context | recipient_context(recipient) | extra | {"step": step.id}
        token = tokens.Token(occ.workflow.name, occ.id, step.id, recipient.id)
        language = recipient.language
        mail = mailer.compose(token, recipient.to, step.template, language, variables, now,
                              attachments=parts)  # fmt: skip
        mails.append(mail)
    return mails


def change_mails(
    db: Database, mailer: Mailer, workflow: Workflow, event: Event, change: str,
    detail: str, now: dt.datetime,
) -> list[Outgoing]:  # fmt: skip
    """The update (or cancellation) of an event already announced by ``workflow``, to its
    attendees, with the event's current sequence."""
    cancelled = change == Change.CANCELLED
    template = workflow.cancel_template if cancelled else workflow.update_template
    kinds = workflow.schedule.kinds
    if workflow.schedule.every != "event" or not template or (kinds and event.kind not in kinds):
        return []
    occ = Occurrence(workflow, f"ev-{event.id}", event.local_day(mailer.config.timezone), event)
    if not schedule.any_ran(db, workflow.name, occ.id):
        return []  # the next reminder will carry the new details
    step = Step(f"{change}{event.sequence}", now.time(), Invite.name, template, "attendees")
    context = base_context(mailer.config, occ, now, now, False)
    context["change"] = {"kind": change, "detail": detail, "rescheduled": rescheduled(detail)}
    return build_mails(db, mailer, occ, step, "attendees", context, now)


@dataclass(frozen=True)
class Prepared:
    """A step's rendered mails, and what sending them shows for the first and last time."""

    mails: list[Outgoing]
    to_staff: bool = False
    shown: dict[str, tuple[int, ...]] = field(default_factory=dict)  # see Kind.shown


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
    db: Database, mailer: Mailer, occ: Occurrence, step: Step, due: dt.datetime,
    now: dt.datetime, blind: str = "",
) -> StepRun:  # fmt: skip
    """Do one due step: skip it, hold it, or queue its mails, and record what happened.

    ``blind`` is why this tick could not read the mailbox ("" when it could): a step whose
    mail depends on what was received is then held, to run at a later tick within its
    grace, or skipped once its grace has passed.
    """
    late = now - due > step.grace
    skip = _skip_reason(db, mailer.config, occ, step, due, now, late, blind)
    if skip is not None:
        detail = blind if skip[0] is Skip.BLIND else ""
        return _record(db, occ, step, due, now, Run.SKIPPED, skip[1], [], reason=skip[0],
                       detail=detail)  # fmt: skip
    if blind and reads_answers(step):
        note = f"held: the mailbox could not be read ({blind})"
        notices.record(db, _notice(notices.Kind.HELD, occ, step, Skip.BLIND, blind), now)
        log.info("%s %s %s: %s", occ.workflow.name, occ.id, step.id, note)
        return StepRun(occ.workflow.name, occ.id, step.id, Run.HELD, 0, note)
    prepared = step_mails(db, mailer, occ, step, due, now, late)
    if isinstance(prepared, str):
        return _record(db, occ, step, due, now, Run.SKIPPED, prepared, [], reason=Skip.EMPTY)
    status, note = (Run.LATE, f"due at {iso(due)}, sent late") if late else (Run.DONE, "")
    return _record(db, occ, step, due, now, status, note, prepared.mails, prepared.to_staff,
                   shown=prepared.shown)  # fmt: skip


def step_context(
    db: Database, mailer: Mailer, occ: Occurrence, step: Step, due: dt.datetime,
    now: dt.datetime, late: bool,
) -> dict[str, Any]:  # fmt: skip
    """Everything a step's templates receive but the recipient: the one place a context is
    built, for the step, the preview and the preflight."""
    return base_context(mailer.config, occ, due, now, late) | kind_of(step).context(
        db, mailer, occ, step, now
    )


def step_mails(
    db: Database, mailer: Mailer, occ: Occurrence, step: Step, due: dt.datetime,
    now: dt.datetime, late: bool,
) -> Prepared | str:  # fmt: skip
    """The rendered mails of a step, or why there are none.

    Raises ``TemplateError`` before anything is queued. The preflight check renders
    every step through this same function, on a scratch database.
    """
    kind = kind_of(step)
    context = step_context(db, mailer, occ, step, due, now, late)
    empty = kind.empty(step, context)
    if empty:
        return empty
    audience = "staff" if late and step.when_late == "staff" else step.to
    mails = build_mails(db, mailer, occ, step, audience, context, now)
    return Prepared(mails, audience == "staff", kind.shown(db, step, context, mails, now))


def give_up(
    db: Database, occ: Occurrence, step: Step, due: dt.datetime, now: dt.datetime,
    error: str,
) -> StepRun:  # fmt: skip
    """Record that a step which could not be prepared until past its grace is not sent."""
    note = f"not sent: could not be prepared until past its grace ({error})"
    return _record(db, occ, step, due, now, Run.SKIPPED, note, [], reason=Skip.FAILED, detail=error)


def _notice(
    kind: notices.Kind, occ: Occurrence, step: Step, reason: str, detail: str = ""
) -> notices.Notice:
    key = f"{kind}:{occ.workflow.name}:{occ.id}:{step.id}"
    return notices.Notice(key, kind, occ.workflow.name, occ.id, step.id, reason, detail)


def failed_notice(occ: Occurrence, step: Step, error: str) -> notices.Notice:
    return _notice(notices.Kind.FAILED, occ, step, Skip.FAILED, error)


def _skip_reason(
    db: Database, config: Config, occ: Occurrence, step: Step, due: dt.datetime,
    now: dt.datetime, late: bool, blind: str,
) -> tuple[Skip, str] | None:  # fmt: skip
    later = schedule.later_step(db, occ.workflow.name, occ.id, due)
    if later:
        return Skip.LATER_RAN, f"missed: step {later}, due later, already ran"
    opening = occ.workflow.opening
    if opening is not None and step is not opening:
        asked_at = schedule.ran_at(db, occ.workflow.name, occ.id, opening.id)
        if asked_at is None:
            note = f"not sent: the {opening.id} step of {occ.id} never went out"
            opened = due_at(opening, occ.day, config.timezone, occ.workflow.schedule)
            history = schedule.before_install(db, opened)
            return (Skip.HISTORY if history else Skip.NOT_ASKED), note
        if step.only and asked_at == iso(now):
            return Skip.JUST_ASKED, f"not sent: {opening.id} went out in this same tick"
    if blind and late and reads_answers(step):
        return Skip.BLIND, f"not sent: the mailbox could not be read until past its grace ({blind})"
    if late and step.when_late == "skip":
        return Skip.MISSED, f"missed: due at {iso(due)}, past its grace of {step.grace}"
    return None


def _record(
    db: Database, occ: Occurrence, step: Step, due: dt.datetime, now: dt.datetime,
    status: Run, note: str, mails: list[Outgoing], to_staff: bool = False, *,
    reason: Skip | None = None, detail: str = "", shown: dict[str, tuple[int, ...]] | None = None,
) -> StepRun:  # fmt: skip
    queued = 0
    kind = kind_of(step)
    with transaction(db):
        if reason in TOLD and not kind.cumulative:
            notices.record(db, _notice(notices.Kind.SKIPPED, occ, step, str(reason), detail), now)
        for mail in mails:
            queued += outgoing.queue(db, mail, now)
        if status is not Run.SKIPPED:
            for column, messages in (shown or {}).items():
                inbound.mark(db, column, messages, now)
            kind.sent(db, occ, step, to_staff)
        schedule.record_run(db, occ.workflow.name, occ.id, step.id, due, now, status, note,
                            str(reason or ""))  # fmt: skip
    log.info(
        "%s %s %s: %s, %d mail%s queued%s", occ.workflow.name, occ.id, step.id, status, queued,
        "" if queued == 1 else "s", f" ({note})" if note else "",
    )  # fmt: skip
    return StepRun(occ.workflow.name, occ.id, step.id, status, queued, note)
