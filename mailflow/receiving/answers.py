"""What each incoming message is taken for: an answer to a workflow, or something else.

A human reply is attributed by the token in its In-Reply-To/References (the request it
answers and its respondent: a défi, or a staff member for workflows that ask the staff),
else by its sender being a member of exactly one défi (the latest request that défi
received). A staff member's mail counts only by token: staff write to the shared mailbox
for many reasons, and a plain mail must not stop the reminder of someone who never
answered. A reply from an address that is not a member of the défi it answers is kept and
flagged for the staff, not counted. An answer arriving after the occurrence's digest is
kept as late, for the next digest, unless the answers of the coming occurrence are open
(``[collect] opens``, by default right after the digest): it then counts for that one,
whether it is a fresh mail or a reply to the previous request. Bounces flag the address
that failed, and a hard one (DSN status 5.x.x, for an address mailflow delivered to)
suppresses it; a delay notice (4.x.x) is recorded only. Auto-replies are recorded and
never answered; one that gives a return date marks its sender away through that day. A
mail whose first words say its author will be away ("absente du 21/12 au 03/01") or is
back ("de retour") is obeyed and confirmed only from a roster member (by token or
membership); a stranger's is recorded as from an unknown sender. Unknown senders are
recorded, never attributed by guess. Each message is handled once (the ``inbound`` table).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import MailflowError
from ..programme.attendance import record_reply
from ..programme.opening import coming_occurrence
from ..programme.receipts import Answer, PresenceNote
from ..programme.roster import respondent_addresses
from ..programme.workflow import Workflow, digest_steps
from ..sending import tokens
from ..store import absences, inbound, outgoing, people, schedule
from ..store.db import Database, transaction
from ..store.desk import add_flag
from ..store.outgoing import Outgoing, queue
from ..store.states import Kind, Respondent
from .parse import ParsedMessage
from .presence import Statement, statement
from .signoff import is_thanks

if TYPE_CHECKING:
    from .alias import Handled

log = logging.getLogger(__name__)


@dataclass
class InboundReport:
    handled: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    kind: str  # answer, auto_reply, bounce, reply, staff, unknown_sender
    status: str  # counted, late, non_member, ambiguous, recorded, delayed (a bounce)
    workflow: str | None = None
    occurrence: str | None = None
    respondent: str | None = None  # "d-<défi>" or "s-<staff hash>", as in tokens
    via: str | None = None
    data: dict[str, object] | None = None
    flag: tuple[str, str, str] | None = None  # (address, kind, detail)
    suppress: tuple[str, str] | None = None  # (address, DSN status) of a hard bounce
    presence: tuple[str, Statement, str] | None = None  # (address, statement, source)
    early: bool = False  # an answer that counts for the coming occurrence, not the last


def pending_messages(db: Database) -> Iterable[tuple[int, ParsedMessage]]:
    for message, data in inbound.unhandled(db):
        yield message, ParsedMessage.from_json(json.loads(data))


Receipt = Callable[[Answer | PresenceNote], Outgoing]
# An auto-reply that gives a return date only says so: its text is the responder's.
_TEXT_ONLY = ("auto-reply subject", "out-of-office text")
AliasDesk = Callable[[Database, int, ParsedMessage, dt.datetime], "Handled | None"]


def handle_inbound(
    db: Database,
    workflows: list[Workflow],
    secret: str,
    now: dt.datetime,
    receipt: Receipt | None = None,
    desk: AliasDesk | None = None,
    tz: dt.tzinfo = dt.UTC,
) -> InboundReport:
    """Decide, once, what every parsed message not handled yet is.

    ``receipt`` builds the acknowledgement of an answer, for workflows that send one, and
    the confirmation of an absence; it is queued in the same transaction as the decision,
    so it goes exactly once. ``tz``: the programme's time zone, that of ``[collect] opens``.
    """
    report = InboundReport()
    by_name = {w.name: w for w in workflows if w.collect is not None}
    for message, parsed in pending_messages(db):
        try:
            verdict = _handle(db, by_name, secret, message, parsed, now, receipt, desk, tz)
        except Exception as e:  # one message must never stop the others, nor every tick
            log.exception("message %s could not be handled", message)
            error = f"{type(e).__name__}: {e}"
            flag = ((parsed.from_address or "?").lower(), "error", f"message {message}: {error}")
            verdict = Verdict("error", "failed", data={"error": error}, flag=flag)
            with transaction(db):
                _record(db, message, parsed, verdict, now)
        report.handled += 1
        report.kinds[verdict.kind] = report.kinds.get(verdict.kind, 0) + 1
    return report


def _handle(
    db: Database,
    collecting: dict[str, Workflow],
    secret: str,
    message: int,
    parsed: ParsedMessage,
    now: dt.datetime,
    receipt: Receipt | None,
    desk: AliasDesk | None,
    tz: dt.tzinfo = dt.UTC,
) -> Verdict:
    """Decide and act in one transaction: the record, its effects and its mails, or nothing."""
    handled = desk(db, message, parsed, now) if desk is not None else None
    if handled is not None:
        verdict = Verdict(handled.kind, handled.status)
        with transaction(db):
            if _record(db, message, parsed, verdict, now):
                for mail in handled.act(db):
                    queue(db, mail, now)
        return verdict
    verdict = judge(db, collecting, secret, parsed, now, tz)
    receipt_mail = _receipt(collecting, verdict, parsed, message, receipt)
    if verdict.kind == Kind.ABSENCE:
        receipt_mail = _confirmation(verdict, parsed, message, receipt)
    with transaction(db):
        if _record(db, message, parsed, verdict, now) and receipt_mail is not None:
            queue(db, receipt_mail, now)
    return verdict


def _receipt(
    collecting: dict[str, Workflow],
    verdict: Verdict,
    parsed: ParsedMessage,
    message: int,
    receipt: Receipt | None,
) -> Outgoing | None:
    if receipt is None or verdict.kind != "answer" or verdict.status not in ("counted", "late"):
        return None
    workflow = collecting[verdict.workflow or ""]
    if not workflow.acknowledge or not verdict.respondent or not verdict.occurrence:
        return None
    answer = Answer(
        workflow, verdict.occurrence, verdict.respondent, author(parsed),
        parsed.from_name, message, verdict.data or {}, verdict.status == "late",
        parsed.message_id, _thread(parsed), verdict.early,
    )  # fmt: skip
    try:
        return receipt(answer)
    except MailflowError as e:  # a broken receipt template must not lose the answer
        log.error("receipt for message %s not sent: %s", message, e)
        return None


def _thread(parsed: ParsedMessage) -> tuple[str, ...]:
    """The Message-IDs the reply answers, oldest first: its receipt continues that thread."""
    return parsed.references or parsed.in_reply_to


def _confirmation(
    verdict: Verdict, parsed: ParsedMessage, message: int, receipt: Receipt | None
) -> Outgoing | None:
    """The short answer to a member's "absent…" or "de retour" mail."""
    if receipt is None or verdict.presence is None:
        return None
    address, said, _ = verdict.presence
    note = PresenceNote(
        address, parsed.from_name, message, verdict.respondent or "", said, parsed.message_id,
        _thread(parsed),
    )  # fmt: skip
    try:
        return receipt(note)
    except MailflowError as e:  # a broken template must not lose the absence
        log.error("confirmation for message %s not sent: %s", message, e)
        return None


def judge(
    db: Database, collecting: dict[str, Workflow], secret: str, parsed: ParsedMessage,
    now: dt.datetime, tz: dt.tzinfo = dt.UTC,
) -> Verdict:  # fmt: skip
    sender = author(parsed)
    if parsed.unreadable:
        return _unreadable(db, collecting, secret, parsed)
    if parsed.automatic == "bounce":
        return _bounce(db, parsed)
    said = _statement(parsed, now, tz)
    if said is not None:
        return _presence(db, secret, parsed, said)
    if parsed.automatic:
        return _auto_reply(db, parsed)
    if parsed.calendar_reply:
        # An answer to an invitation, never to a request: kept for what it says.
        return Verdict("reply", "recorded", data={"calendar_reply": parsed.calendar_reply})
    token = tokens.first_token(secret, parsed.thread_ids)
    if token is not None:
        workflow = collecting.get(token.workflow)
        if workflow is None or token.recipient[:2] not in ("d-", "s-"):
            return Verdict("reply", "recorded", token.workflow, token.occurrence, via="token")
        return _answer(db, workflow, token.occurrence, token.recipient, sender, parsed, "token",
                       now, tz)  # fmt: skip
    defis = people.defis_of(db, sender)
    if len(defis) > 1:
        detail = f"member of {', '.join(defis)}: not attributed"
        return Verdict("answer", "ambiguous", via="membership", flag=(sender, "ambiguous", detail))
    staff = sender != "" and people.is_staff(db, sender)
    if not defis:
        # A staff member's mail is their answer only when it replies to the request (by its
        # token, above): staff write to the shared mailbox for many other reasons.
        return Verdict("staff", "recorded") if staff else Verdict("unknown_sender", "recorded")
    respondent = Respondent.defi(defis[0])
    found = _latest_request(db, collecting, respondent)
    if found:
        return _answer(db, found[0], found[1], respondent, sender, parsed, "membership", now, tz)
    return Verdict("reply", "recorded", respondent=respondent)


def _statement(parsed: ParsedMessage, now: dt.datetime, tz: dt.tzinfo) -> Statement | None:
    """What a person's own mail says of their presence, if its first words say it."""
    if parsed.calendar_reply:
        return None  # an answer to an invitation: its comment is for the organiser
    if parsed.automatic and parsed.automatic_reason not in _TEXT_ONLY:
        return None  # marked automatic by its headers: a responder's, never obeyed
    today = now.astimezone(tz).date()
    sent = dt.date.fromisoformat(parsed.date[:10]) if parsed.date else today
    headed = any(parsed.sections.values()) or any(parsed.fields.values())
    said = statement(parsed.subject, parsed.text, sent, headed)
    # Back from today: what was noted for later days is over too.
    return replace(said, first_day=today) if said and said.kind == "back" else said


def _presence(db: Database, secret: str, parsed: ParsedMessage, said: Statement) -> Verdict:
    """A member's "absent…" or "de retour" is obeyed and confirmed; a stranger's is not."""
    sender = author(parsed)
    data: dict[str, object] = dict(said.as_json())
    token = tokens.first_token(secret, parsed.thread_ids)
    respondent = None
    if (
        token is not None
        and token.recipient[:2] in ("d-", "s-")
        and sender in respondent_addresses(db, token.recipient)
    ):
        respondent = token.recipient
    defis = people.defis_of(db, sender)
    if respondent is None and defis:
        respondent = Respondent.defi(defis[0])
    if respondent is None and sender and people.is_staff(db, sender):
        respondent = Respondent.staff(sender)
    if respondent is None:
        # Nobody mailflow knows: never obeyed, and shown to the staff like any stranger's mail.
        return Verdict("unknown_sender", "recorded", data=data | {"refused": "not in the roster"})
    status = "recorded" if said.kind != "unclear" else "unclear"
    via = "token" if token is not None and respondent == token.recipient else "membership"
    return Verdict(Kind.ABSENCE, status, respondent=respondent, via=via, data=data,
                   presence=(sender, said, "declared"))  # fmt: skip


def _auto_reply(db: Database, parsed: ParsedMessage) -> Verdict:
    """Recorded, never answered; a return date marks a roster member away through it."""
    if not parsed.absent_until:
        return Verdict("auto_reply", "recorded")
    data: dict[str, object] = {"absent_until": parsed.absent_until}
    sender = author(parsed)
    known = bool(sender) and (bool(people.defis_of(db, sender)) or people.is_staff(db, sender))
    last = dt.date.fromisoformat(parsed.absent_until)
    said = Statement("away", last)
    return Verdict("auto_reply", "recorded", data=data,
                   presence=(sender, said, "auto_reply") if known else None)  # fmt: skip


def _unreadable(
    db: Database, collecting: dict[str, Workflow], secret: str, parsed: ParsedMessage
) -> Verdict:
    """A message mailflow could not read (too large, or it could not be parsed): whose it is.

    Only its header was read, so it is never counted nor acknowledged; it is tied to the
    request it answers when it can be, so that the digest says the défi wrote, and the
    staff's daily mail lists it for a person to read.
    """
    data: dict[str, object] = {"unreadable": parsed.unreadable}
    token = tokens.first_token(secret, parsed.thread_ids)
    if token is not None and token.workflow in collecting and token.recipient[:2] in ("d-", "s-"):
        return Verdict("answer", "unreadable", token.workflow, token.occurrence, token.recipient,
                       "token", data)  # fmt: skip
    defis = people.defis_of(db, author(parsed))
    found = _latest_request(db, collecting, Respondent.defi(defis[0])) if len(defis) == 1 else None
    if found:
        workflow, occurrence = found
        respondent = Respondent.defi(defis[0])
        return Verdict("answer", "unreadable", workflow.name, occurrence, respondent,
                       "membership", data)  # fmt: skip
    return Verdict("unreadable", "recorded", data=data)


def _bounce(db: Database, parsed: ParsedMessage) -> Verdict:
    failed = (parsed.bounced_recipient or "").lower()
    status = parsed.bounce_status or ""
    data: dict[str, object] = {"recipient": failed, "status": status}
    if status.startswith("4"):
        # A relay still trying ("delayed"): nothing is final, nothing to flag.
        return Verdict("bounce", "delayed", data=data)
    flag = (failed, "bounce", parsed.subject) if failed else None
    # Only a bounce for an address mailflow delivered to stops mail to it: a forged or
    # misread report for anyone else is flagged, never obeyed.
    hard = bool(failed) and status.startswith("5") and outgoing.was_mailed(db, failed)
    return Verdict("bounce", "recorded", data=data, flag=flag,
                   suppress=(failed, status) if hard else None)  # fmt: skip


def _latest_request(
    db: Database, collecting: dict[str, Workflow], respondent: str
) -> tuple[Workflow, str] | None:
    """The collecting workflow and occurrence of the last request this respondent received."""
    if not collecting:
        return None
    row = inbound.latest_request(db, tuple(collecting), respondent)
    return (collecting[row[0]], row[1]) if row else None


def _answer(
    db: Database,
    workflow: Workflow,
    occurrence: str,
    respondent: str,
    sender: str,
    parsed: ParsedMessage,
    via: str,
    now: dt.datetime,
    tz: dt.tzinfo = dt.UTC,
) -> Verdict:
    assert workflow.collect is not None
    early = False
    if digest_done(db, workflow, occurrence):
        coming = coming_occurrence(db, workflow, occurrence, now, tz)
        if coming is not None:  # answering early: for the coming occurrence, not a late one
            occurrence, early = coming, True
    split = workflow.collect.split(parsed.text)
    sections = {k: split[k] for k in workflow.collect.section_keys}
    fields = {k: split[k] for k in workflow.collect.field_keys}
    data: dict[str, object] = {
        "sections": sections, "fields": fields, "text": parsed.text,
        "from_name": parsed.from_name,
    }  # fmt: skip
    headed = any(sections.values()) or any(fields.values())
    previous = None if headed else _previous(db, workflow.name, occurrence, respondent)
    if previous is not None and not _replaces(parsed.text, previous):
        # "Merci !" in answer to a receipt: a conversation, not a new (empty) answer.
        return Verdict("reply", "recorded", workflow.name, occurrence, respondent, via)
    if sender not in respondent_addresses(db, respondent):
        detail = f"answered for {respondent} ({workflow.name} {occurrence}) but is not a member"
        return Verdict("answer", "non_member", workflow.name, occurrence, respondent, via, data,
                       flag=(sender, "non_member", detail))  # fmt: skip
    status = "late" if digest_done(db, workflow, occurrence) else "counted"
    return Verdict("answer", status, workflow.name, occurrence, respondent, via, data,
                   early=early)  # fmt: skip


def _previous(
    db: Database, workflow: str, occurrence: str, respondent: str
) -> dict[str, object] | None:
    """The data of the respondent's latest answer for this occurrence, if any."""
    row = inbound.latest_answer_data(db, workflow, occurrence, respondent)
    return None if row is None else dict(json.loads(row or "{}"))


def _replaces(text: str, previous: dict[str, object]) -> bool:
    """Whether a message without headings is a new answer replacing ``previous``.

    Only when the first answer had no headings either (a correction of free text by
    free text), and the new text says something beyond thanks.
    """
    earlier = [previous.get("sections"), previous.get("fields")]
    earlier_headed = any(any(part.values()) for part in earlier if isinstance(part, dict))
    return not earlier_headed and bool(text.strip()) and not is_thanks(text)


def author(parsed: ParsedMessage) -> str:
    """The address answers are attributed to: the message's author (see ``lists``)."""
    return (parsed.author or parsed.from_address or "").lower()


def digest_done(db: Database, workflow: Workflow, occurrence: str) -> bool:
    """Whether a digest of this occurrence has gone out (answers after it are late)."""
    digests = tuple(s.id for s in digest_steps(workflow))
    return bool(digests) and schedule.any_ran(db, workflow.name, occurrence, digests)


def _record(
    db: Database,
    message: int,
    parsed: ParsedMessage,
    verdict: Verdict,
    now: dt.datetime,
) -> bool:
    """Record the decision; False when the message was already handled (by another process)."""
    data = json.dumps(verdict.data, ensure_ascii=False) if verdict.data else None
    recorded = inbound.record_verdict(
        db, message, now, verdict.kind, verdict.status, author(parsed), verdict.workflow,
        verdict.occurrence, verdict.respondent, verdict.via, data,
    )  # fmt: skip
    if not recorded:
        return False
    if verdict.data and "calendar_reply" in verdict.data:
        record_reply(db, message, parsed, now)
    if verdict.flag:
        address, kind, detail = verdict.flag
        add_flag(db, address, kind, detail, now, message=message)
    if verdict.presence:
        _note_presence(db, message, verdict.presence, now)
    if verdict.suppress:
        address, status = verdict.suppress
        if outgoing.suppress(db, address, "bounced", now, code=status, message=message):
            log.warning("message %s: %s bounced (%s); no more mail to it", message, address, status)
    log.info("message %s: %s (%s)", message, verdict.kind, verdict.status)
    return True


def _note_presence(
    db: Database, message: int, presence: tuple[str, Statement, str], now: dt.datetime
) -> None:
    address, said, source = presence
    if said.kind == "back":
        absences.cancel_absences(db, address, said.first_day or now.date(), now)
    elif said.kind == "away" and said.last_day is not None:
        absences.add_absence(db, address, said.first_day, said.last_day, source, message, now)
