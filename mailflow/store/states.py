"""The words the store keeps for states, as enums: no module spells them itself.

What each incoming message was taken for (``Kind``) and how it stands (``Status``), where
a stored message is in its parse (``Parsing``), what each run of a step did (``Run``),
where each outgoing mail is (``Sending``) and what became of each of its addresses
(``Delivery``, ``Failure``), why an address is no longer mailed (``Suppressed``) or was
flagged to the staff (``Flag``), how an event stands (``EventStatus``) and changed
(``Change``), and the ids of respondents (``Respondent``): "d-<défi>", "s-<staff hash>",
"p-<person hash>".
"""

from __future__ import annotations

import hashlib
from enum import StrEnum


class Kind(StrEnum):
    """What an incoming message was taken for (``inbound.kind``)."""

    ANSWER = "answer"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    REPLY = "reply"  # a reply to a mail that asks nothing (a digest, a receipt)
    STAFF = "staff"  # a staff member's mail that is no answer, command or reply to help
    UNKNOWN_SENDER = "unknown_sender"
    UNREADABLE = "unreadable"
    ERROR = "error"
    COMMAND = "command"
    HELP = "help"
    STAFF_REPLY = "staff_reply"
    ABSENCE = "absence"  # a person's own "absent until…" or "back" mail


class Status(StrEnum):
    """How an incoming message stands (``inbound.status``)."""

    COUNTED = "counted"  # an answer, before its occurrence's digest
    LATE = "late"  # an answer after it, for the next digest
    NON_MEMBER = "non_member"
    AMBIGUOUS = "ambiguous"
    UNREADABLE = "unreadable"
    RECORDED = "recorded"
    DELAYED = "delayed"  # a bounce saying the relay still tries
    FAILED = "failed"
    WAITING = "waiting"  # a help request
    EXECUTED = "executed"
    REFUSED = "refused"


ANSWERED = (Status.COUNTED, Status.LATE)  # the answers that count


class Parsing(StrEnum):
    """Where a stored message is in its parse (``messages.status``)."""

    NEW = "new"
    PARSED = "parsed"
    RETRY = "retry"  # its parse failed or ran out of time: tried again
    QUARANTINED = "quarantined"  # too large, or failed every attempt


PENDING = (Parsing.NEW, Parsing.RETRY)  # the messages still to parse


class Run(StrEnum):
    """What a step of an occurrence did (``runs.status``)."""

    DONE = "done"
    LATE = "late"
    SKIPPED = "skipped"
    HELD = "held"  # not recorded: tried again at the next tick


class Sending(StrEnum):
    """Where an outgoing mail is (``outbox.status``)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Delivery(StrEnum):
    """What became of one address of an outgoing mail (``deliveries.status``)."""

    SENT = "sent"
    RETRY = "retry"  # refused for a while: tried again for it alone
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # left out of the envelope


# Outcomes that take an address out of a mail's next envelopes.
SETTLED = (Delivery.SENT, Delivery.FAILED, Delivery.SUPPRESSED)


class Failure(StrEnum):
    """Why an address failed for good (``deliveries.failure``: rejected, exhausted,
    message) or a whole mail did (``outbox.failure``: refused, exhausted, recipients,
    no_recipient)."""

    REJECTED = "rejected"  # a 5xx for that address
    EXHAUSTED = "exhausted"  # temporary refusals outlasted the retries
    MESSAGE = "message"  # the whole message refused after others had it
    REFUSED = "refused"  # a 5xx for the whole message
    RECIPIENTS = "recipients"  # every address failed
    NO_RECIPIENT = "no_recipient"  # every address was suppressed: nothing was sent


class Suppressed(StrEnum):
    """Why mailflow no longer writes to an address (``suppressed.reason``)."""

    REFUSED = "refused"  # a 5xx at delivery
    BOUNCED = "bounced"  # a hard delivery status notification


class Flag(StrEnum):
    """What the staff should know of an address (``address_flags.kind``)."""

    BOUNCE = "bounce"
    REFUSED = "refused"
    NON_MEMBER = "non_member"
    AMBIGUOUS = "ambiguous"
    ERROR = "error"
    UNINVITED = "uninvited"  # answered an invitation it was not sent


class EventStatus(StrEnum):
    """How an event stands (``events.status``)."""

    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Change(StrEnum):
    """What happened to an event (``event_changes.change``)."""

    CREATED = "created"
    CHANGED = "changed"  # a significant field changed: its sequence grew
    EDITED = "edited"  # an insignificant one: not recorded as a change
    CANCELLED = "cancelled"


class Respondent(str):
    """A respondent's id as stored and signed in tokens: a str, with what it names."""

    DEFI, STAFF, PERSON = "d-", "s-", "p-"

    @classmethod
    def defi(cls, defi_id: str) -> Respondent:
        return cls(cls.DEFI + defi_id)

    @classmethod
    def staff(cls, address: str) -> Respondent:
        return cls(cls.STAFF + _hash(address))

    @classmethod
    def person(cls, address: str) -> Respondent:
        """A person who receives a mail of their own (an invitation), and answers nothing."""
        return cls(cls.PERSON + _hash(address))

    @property
    def defi_id(self) -> str | None:
        """The défi's id, for a défi; None for anyone else."""
        return self[2:] if self.startswith(self.DEFI) else None

    @property
    def is_staff(self) -> bool:
        return self.startswith(self.STAFF)

    @property
    def answers(self) -> bool:
        """Whether this respondent answers workflows (a défi or a staff member)."""
        return self.startswith((self.DEFI, self.STAFF))


def _hash(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()[:12]
