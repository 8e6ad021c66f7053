"""The receipt of an answer: what was understood, to its sender, in the thread of the reply."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    }  # fmt: skip
    step = f"ack{answer.message}"
    token = tokens.Token(workflow.name, answer.occurrence, step, answer.respondent)
    thread = (*answer.thread, answer.message_id) if answer.message_id else ()
    return mailer.compose(
        token, (answer.sender,), workflow.acknowledge, language, context, now, thread=thread
    )
