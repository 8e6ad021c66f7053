"""The receipt of an answer: what was understood, to its sender, in the thread of the reply;
and the confirmation of an absence a person announced (``PresenceNote``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..receiving.presence import Statement
from ..sending import tokens
from ..store.db import Database
from ..store.outgoing import Outgoing
from ..store.states import Respondent
from .occurrences import day_of
from .roster import respondent_info, stored_roster
from .steps import Occurrence, base_context
from .workflow import Workflow

if TYPE_CHECKING:
    from ..sending.compose import Mailer


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
    message_id: str | None = None  # of the reply: the receipt answers it in its thread
    thread: tuple[str, ...] = ()  # the Message-IDs the reply itself answers
    early: bool = False  # sent before the occurrence's answers were asked for


@dataclass(frozen=True)
class PresenceNote:
    """A person's "absent…" or "de retour" mail, as its confirmation needs it."""

    sender: str
    from_name: str
    message: int
    respondent: str  # "d-<défi>" or "s-<staff hash>"
    statement: Statement
    message_id: str | None = None
    thread: tuple[str, ...] = ()


PRESENCE_TEMPLATE = "presence/confirm"


def receipt_for(
    db: Database, mailer: Mailer, item: Answer | PresenceNote, now: dt.datetime
) -> Outgoing:
    """The receipt of an answer or the confirmation of an absence."""
    if isinstance(item, PresenceNote):
        return presence_confirmation(db, mailer, item, now)
    return acknowledgement(db, mailer, item, now)


def presence_confirmation(
    db: Database, mailer: Mailer, note: PresenceNote, now: dt.datetime
) -> Outgoing:
    """To the person who wrote it: the days mailflow understood, or how to say them."""
    config = mailer.config
    roster = stored_roster(db)
    defi = next((d for d in roster.defis if Respondent.defi(d.id) == note.respondent), None)
    language = (defi.language if defi else None) or config.language
    said = note.statement
    context: dict[str, Any] = {
        "language": language, "who": respondent_info(roster, note.respondent),
        "from_name": note.from_name, "presence": said.kind, "first_day": said.first_day,
        "last_day": said.last_day, "back_on": said.last_day + dt.timedelta(days=1)
        if said.last_day else None, "now": now.astimezone(config.timezone),
        "programme": {"name": config.addresses.sender_name, "alias": config.addresses.alias},
    }  # fmt: skip
    day = now.astimezone(config.timezone).date().isoformat()
    token = tokens.Token("presence", day, f"presence{note.message}", note.respondent)
    thread = (*note.thread, note.message_id) if note.message_id else ()
    return mailer.compose(
        token, (note.sender,), PRESENCE_TEMPLATE, language, context, now, thread=thread
    )


def acknowledgement(db: Database, mailer: Mailer, answer: Answer, now: dt.datetime) -> Outgoing:
    """The receipt for one answer, to its sender: what was understood, and how to correct it."""
    workflow = answer.workflow
    config = mailer.config
    roster = stored_roster(db)
    defi = next((d for d in roster.defis if Respondent.defi(d.id) == answer.respondent), None)
    language = (defi.language if defi else None) or workflow.language or config.language
    occ = Occurrence(workflow, answer.occurrence, day_of(workflow.schedule, answer.occurrence))
    context = base_context(config, occ, now, now, False)
    who = respondent_info(roster, answer.respondent)
    context |= {
        "language": language, "recipient": answer.respondent, "who": who, "defi": who,
        "answer": answer.data, "late_answer": answer.late, "from_name": answer.from_name,
        "early_answer": answer.early,
    }  # fmt: skip
    step = f"ack{answer.message}"
    token = tokens.Token(workflow.name, answer.occurrence, step, answer.respondent)
    thread = (*answer.thread, answer.message_id) if answer.message_id else ()
    return mailer.compose(
        token, (answer.sender,), workflow.acknowledge, language, context, now, thread=thread
    )
