"""Step kinds: what a workflow step does (its ``action``), one registered object per kind.

Each kind checks its step's options when workflows load, says whether its mail depends on
the answers received (such steps wait for a tick that read the mailbox), adds what its
templates receive, and what differs per recipient. Adding a kind is one class here (or
anywhere, registered with ``@register``) plus its templates:

    @register
    class Thanks(Kind):
        name = "thanks"
        audiences = ("each_defi",)

The kinds shipped: ``send`` (a template to an audience), ``digest`` (what was collected),
``invite`` (an event reminder with its invitation), ``attendance`` (an event's headcount,
in ``attendance``), ``notes`` (a défi's own answers before a session) and ``help`` (the
staff's list of mail waiting for a person).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from ..store import inbound
from ..store.db import Database
from ..store.states import EventStatus
from .audiences import AUDIENCES, EACH, Recipient
from .roster import respondent_info, stored_roster

if TYPE_CHECKING:
    from ..receiving.sections import SectionSpec
    from ..sending.compose import Mailer
    from ..sending.render import Attachment
    from .steps import Occurrence
    from .workflow import Step

Fail = Callable[[str, str, object], NoReturn]


class Kind:
    """The behaviour of one kind of step; subclasses override what differs."""

    name: ClassVar[str] = ""
    audiences: ClassVar[tuple[str, ...]] = AUDIENCES  # the ``to`` it accepts
    events_only: ClassVar[bool] = False  # only in event workflows (schedule.every = "event")
    reads_answers: ClassVar[bool] = False  # its mail depends on the answers received
    closes: ClassVar[bool] = False  # answers after it are late (a digest)
    cumulative: ClassVar[bool] = False  # what a missed one says, the next one says too

    def check(self, step: Step, every: str, collect: SectionSpec | None, fail: Fail) -> None:
        """Reject options this kind cannot honour (``fail(key, expected, got)``)."""
        if step.to not in self.audiences:
            fail("to", " or ".join(repr(a) for a in self.audiences), step.to)
        if self.events_only and every != "event":
            fail("action", "a step of an event workflow (schedule.every = 'event')", step.action)
        self._filters(step, collect, fail)
        if step.unless_empty:
            fail(
                "unless_empty",
                "no unless_empty: only digest steps have it",
                list(step.unless_empty),
            )

    def _filters(self, step: Step, collect: SectionSpec | None, fail: Fail) -> None:
        if step.only and collect is None:
            fail("only", "no filter: this workflow collects no replies", step.only)
        if step.only and step.to not in EACH:
            fail("only", f"no filter with to = {step.to!r} (only each_defi, each_staff)", step.only)

    def reads(self, step: Step) -> bool:
        return self.reads_answers

    def role(self, step: Step) -> str:
        """What the step's mail is to the people who read about it (templates name it):
        request, reminder, digest, staff_digest, invitation, notes, help."""
        return self.name

    def asks(self, step: Step) -> bool:
        """Whether the step asks the respondents for an answer (a workflow's request)."""
        return False

    def context(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        now: dt.datetime,
    ) -> dict[str, Any]:  # fmt: skip
        """What this kind adds to every template of the step."""
        return {}

    def empty(self, step: Step, context: dict[str, Any]) -> str:
        """Why there is nothing to send, "" when there is."""
        return ""

    def personal(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        recipient: Recipient, now: dt.datetime,
    ) -> tuple[dict[str, Any], tuple[Attachment, ...]]:  # fmt: skip
        """What differs per recipient: more variables, attachments."""
        return {}, ()

    def shown(
        self, db: Database, step: Step, context: dict[str, Any],
        mails: list[Any], now: dt.datetime,
    ) -> dict[str, tuple[int, ...]]:  # fmt: skip
        """Messages its mails show for the first time: {"listed_at" | "noted_at": ids}."""
        return {}

    def sent(self, db: Database, occ: Occurrence, step: Step, to_staff: bool) -> None:
        """Record, with the run, what sending it settled."""


KINDS: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Make a kind available to workflows as ``action = "<name>"``."""
    KINDS[cls.name] = cls()
    return cls


def kind_of(step: Step) -> Kind:
    return KINDS[step.action]


@register
class Send(Kind):
    """A template to an audience: the request, a reminder (``only``), an announcement."""

    name = "send"

    def check(self, step: Step, every: str, collect: SectionSpec | None, fail: Fail) -> None:
        super().check(step, every, collect, fail)
        if step.to == "attendees":
            fail("to", "an audience other than 'attendees' (that is an invite step's)", step.to)

    def reads(self, step: Step) -> bool:
        return bool(step.only)

    def role(self, step: Step) -> str:
        return "reminder" if step.only else "request" if step.to in EACH else "announcement"

    def asks(self, step: Step) -> bool:
        return step.to in EACH and not step.only


@register
class Digest(Kind):
    """What was collected for the occurrence, to an audience (the cohort, the staff)."""

    name = "digest"
    audiences = ("cohort", "alias", "staff", "each_defi", "each_staff")
    reads_answers = True
    closes = True

    def check(self, step: Step, every: str, collect: SectionSpec | None, fail: Fail) -> None:
        if step.to not in self.audiences:
            fail("to", " or ".join(repr(a) for a in self.audiences), step.to)
        self._filters(step, collect, fail)
        from .workflow import DIGEST_KEYS

        keys = (*DIGEST_KEYS, *(collect.section_keys + collect.field_keys if collect else ()))
        unknown = [k for k in step.unless_empty if k not in keys]
        if unknown:
            fail("unless_empty", "digest keys among " + ", ".join(keys), list(step.unless_empty))

    def role(self, step: Step) -> str:
        return "staff_digest" if step.to in ("staff", "alias") else "digest"

    def context(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        now: dt.datetime,
    ) -> dict[str, Any]:  # fmt: skip
        from .digest import digest_context

        return digest_context(db, occ.workflow, occ.id, occ.day, mailer.config.timezone)

    def empty(self, step: Step, context: dict[str, Any]) -> str:
        def has(key: str) -> bool:
            by_key = context["by_key"]
            return bool(by_key.get(key) if key in by_key else context.get(key))

        if step.unless_empty and not any(has(k) for k in step.unless_empty):
            return "nothing to send: no " + ", no ".join(step.unless_empty)
        return ""

    def sent(self, db: Database, occ: Occurrence, step: Step, to_staff: bool) -> None:
        from ..store.desk import mark_flags_reported
        from .digest import mark_shown

        mark_shown(db, occ.workflow.name, occ.id, to_staff)
        if to_staff:
            mark_flags_reported(db, occ.id)


@register
class Invite(Kind):
    """An event's reminder to its audience, with a calendar invitation (iMIP)."""

    name = "invite"
    audiences = ("attendees",)
    events_only = True

    def role(self, step: Step) -> str:
        return "invitation"

    def personal(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        recipient: Recipient, now: dt.datetime,
    ) -> tuple[dict[str, Any], tuple[Attachment, ...]]:  # fmt: skip
        from ..sending import invitation

        assert occ.event is not None
        config = mailer.config
        method = "CANCEL" if occ.event.status == EventStatus.CANCELLED else "REQUEST"
        ics = invitation.calendar(
            occ.event, method=method, organizer=config.addresses.reply_to,
            organizer_name=config.addresses.sender_name, attendee=recipient.to[0],
            tz=config.timezone, stamp=now,
        )  # fmt: skip
        return {}, invitation.attachments(ics, method)


@register
class Notes(Kind):
    """Before a session, each défi's own answers to a collecting workflow, to present them.

    Every answer is in exactly one set of notes, whenever it came: one that arrives after
    the notes of a session, before the session itself, is in the next session's.
    """

    name = "notes"
    audiences = ("each_defi",)
    events_only = True
    reads_answers = True

    def check(self, step: Step, every: str, collect: SectionSpec | None, fail: Fail) -> None:
        super().check(step, every, collect, fail)
        if not step.source:
            fail("source", "the collecting workflow whose answers make the notes", step.source)

    def personal(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        recipient: Recipient, now: dt.datetime,
    ) -> tuple[dict[str, Any], tuple[Attachment, ...]]:  # fmt: skip
        latest: dict[str, dict[str, Any]] = {}
        tz = mailer.config.timezone
        for message, occurrence, received, data, _ in inbound.unnoted(
            db, step.source, now, recipient.id
        ):
            local = dt.datetime.fromisoformat(received).astimezone(tz)
            latest[occurrence] = {
                "occurrence": occurrence, "received_at": local, "message": message,
                **json.loads(data),
            }  # fmt: skip
        return {
            "notes": [latest[k] for k in sorted(latest)],
            "absent": _absent(db, occ, recipient),
        }, ()

    def shown(
        self, db: Database, step: Step, context: dict[str, Any],
        mails: list[Any], now: dt.datetime,
    ) -> dict[str, tuple[int, ...]]:  # fmt: skip
        asked = {m.recipient for m in mails}
        return {
            "noted_at": tuple(r[0] for r in inbound.unnoted(db, step.source, now) if r[4] in asked)
        }


def _absent(db: Database, occ: Occurrence, recipient: Recipient) -> list[dict[str, Any]]:
    """The members of a défi away on the occurrence's day, with their last day away."""
    from .absences import away_on

    away = away_on(db, occ.day)
    members = recipient.defi.members if recipient.defi else ()
    return [
        {"address": m.address, "name": m.name or m.address, "until": away[m.address.lower()]}
        for m in members
        if m.address.lower() in away
    ]


@register
class Help(Kind):
    """The staff's list of help requests nobody answered, and of mail no step shows anyone."""

    name = "help"
    audiences = ("staff", "alias")
    reads_answers = True
    cumulative = True  # a missed list is not lost: the next one carries it

    def context(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        now: dt.datetime,
    ) -> dict[str, Any]:  # fmt: skip
        from ..store import desk

        config = mailer.config
        roster = stored_roster(db)
        pending = []
        for sender, respondent, subject, received_at in desk.waiting_since(
            db, now - occ.workflow.help_after
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

    def empty(self, step: Step, context: dict[str, Any]) -> str:
        if not context["help_requests"] and not context["to_read"]:
            return "no help request waiting, no mail to read"
        return ""

    def shown(
        self, db: Database, step: Step, context: dict[str, Any],
        mails: list[Any], now: dt.datetime,
    ) -> dict[str, tuple[int, ...]]:  # fmt: skip
        return {"listed_at": tuple(m["message"] for m in context["to_read"])}


def to_read(db: Database, config: Any, *, listed: bool = False) -> list[dict[str, Any]]:
    """Human mail no step shows anyone: replies to a digest or a receipt, unknown senders,
    non-members' answers, unreadable messages. Those not listed yet, or (``listed``) all."""
    roster = stored_roster(db)
    found = []
    for message, kind, status, sender, respondent, received, subject, name, data in inbound.to_read(
        db, listed=listed
    ):
        details = json.loads(data) if data else {}
        found.append({
            "message": message, "kind": kind, "status": status, "sender": sender or "",
            "name": name, "subject": subject,
            "received_at": dt.datetime.fromisoformat(received).astimezone(config.timezone),
            "defi": respondent_info(roster, respondent)["name"] if respondent else "",
            "reason": details.get("unreadable") or details.get("error") or "",
        })  # fmt: skip
    return found


# Kinds of their own modules register on import.
from . import attendance as _attendance  # noqa: E402, F401
from . import report as _report  # noqa: E402, F401
