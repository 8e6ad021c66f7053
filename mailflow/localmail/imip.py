"""Answers to calendar invitations (iMIP REPLY) as calendar clients write them, for tests.

Each builder takes the invitation as the attendee received it (raw bytes) and returns the
reply that Outlook, Gmail, Thunderbird or Apple Calendar sends to its ORGANIZER: their
subjects, MIME structure, transfer encodings, and how each writes the attendee, the
comment and the RECURRENCE-ID of one occurrence of a series (Outlook with its Windows
zone name, Gmail in UTC, Thunderbird and Apple with the invitation's TZID).
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import icalendar

from ..receiving.mime import decode_header

CALENDAR_CLIENTS = ("outlook", "gmail", "thunderbird", "apple")
PARTSTATS = {"accepted": "ACCEPTED", "declined": "DECLINED", "tentative": "TENTATIVE"}
_SUBJECTS = {
    "outlook": {"accepted": "Accepté : ", "declined": "Refusé : ", "tentative": "Provisoire : "},
    "gmail": {
        "accepted": "Invitation acceptée\u00a0: ", "declined": "Invitation refusée\u00a0: ",
        "tentative": "Invitation acceptée provisoirement\u00a0: ",
    },
    "thunderbird": {
        "accepted": "Accepté : ", "declined": "Refusé : ", "tentative": "Accepté provisoirement : ",
    },
    "apple": {
        "accepted": "Invitation acceptée\u00a0: ", "declined": "Invitation refusée\u00a0: ",
        "tentative": "Invitation acceptée provisoirement\u00a0: ",
    },
}  # fmt: skip
_PRODIDS = {
    "outlook": "Microsoft Exchange Server 2010",
    "gmail": "-//Google Inc//Google Calendar 70.9054//EN",
    "thunderbird": "-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN",
    "apple": "-//Apple Inc.//macOS 15.1//EN",
}
_WINDOWS_ZONES = {"Europe/Paris": "Romance Standard Time"}


@dataclass(frozen=True)
class _Invitation:
    subject: str
    message_id: str
    organizer: str
    organizer_name: str
    event: icalendar.Event


def _invitation(raw: bytes) -> _Invitation:
    msg = email.message_from_bytes(raw)
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    calendar = icalendar.Calendar.from_ical(bytes(part.get_payload(decode=True)))
    event: Any = next(iter(calendar.walk("VEVENT")))
    organizer = event["ORGANIZER"]
    return _Invitation(
        decode_header(msg.get("Subject", "")), str(msg.get("Message-ID", "")).strip(),
        str(organizer).removeprefix("mailto:"), str(organizer.params.get("CN", "")), event,
    )  # fmt: skip


def _moment(value: dt.datetime | dt.date, style: str) -> str:
    """A date-time property's parameters and value as a client writes it."""
    if not isinstance(value, dt.datetime):
        return f";VALUE=DATE:{value:%Y%m%d}"
    key = getattr(value.tzinfo, "key", "")
    if style == "utc" or not key:
        return f":{value.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    zone = _WINDOWS_ZONES.get(key, key) if style == "windows" else key
    quoted = f'"{zone}"' if " " in zone else zone
    return f";TZID={quoted}:{value:%Y%m%dT%H%M%S}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    data, out = line.encode(), []
    while len(data) > 75:
        cut = 75
        while cut and (data[cut] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
            cut -= 1
        out.append(data[:cut].decode())
        data = b" " + data[cut:]
    out.append(data.decode())
    return "\r\n".join(out)


def _calendar(client: str, inv: _Invitation, attendee: str, name: str, partstat: str,
              comment: str, stamp: dt.datetime) -> str:  # fmt: skip
    event, style = inv.event, {"outlook": "windows", "gmail": "utc"}.get(client, "tzid")
    lines = ["BEGIN:VCALENDAR", f"PRODID:{_PRODIDS[client]}", "VERSION:2.0", "CALSCALE:GREGORIAN",
             "METHOD:REPLY", "BEGIN:VEVENT",
             f"DTSTART{_moment(event.decoded('DTSTART'), style)}",
             f"DTEND{_moment(event.decoded('DTEND'), style)}",
             f"DTSTAMP:{stamp.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}",
             f"ORGANIZER;CN={inv.organizer_name}:mailto:{inv.organizer}",
             f"UID:{event['UID']}"]  # fmt: skip
    if "RECURRENCE-ID" in event:
        lines.append(f"RECURRENCE-ID{_moment(event.decoded('RECURRENCE-ID'), style)}")
    state = PARTSTATS[partstat]
    if client == "gmail":
        extra = f';X-RESPONSE-COMMENT="{comment}"' if comment else ""
        lines.append(f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={state};CN={name}"
                     f";X-NUM-GUESTS=0{extra}:mailto:{attendee}")  # fmt: skip
    elif client == "apple":
        lines.append(f'ATTENDEE;CN="{name}";CUTYPE=INDIVIDUAL;EMAIL="{attendee}";PARTSTAT={state}'
                     f";ROLE=REQ-PARTICIPANT:mailto:{attendee}")  # fmt: skip
    else:
        lines.append(f'ATTENDEE;PARTSTAT={state};CN="{name}":mailto:{attendee}')
    if comment and client == "outlook":
        lines.append(f"COMMENT;LANGUAGE=fr-FR:{_escape(comment)}")
    elif comment and client == "thunderbird":
        lines.append(f"COMMENT:{_escape(comment)}")
    lines += [f"SEQUENCE:{event.get('SEQUENCE', 0)}", f"SUMMARY:{_escape(str(event['SUMMARY']))}",
              "END:VEVENT", "END:VCALENDAR"]  # fmt: skip
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


def calendar_reply(
    client: str, invitation_raw: bytes, attendee: str, name: str, partstat: str,
    comment: str = "", *, date: dt.datetime | None = None,
) -> bytes:  # fmt: skip
    """The answer (accepted, declined, tentative) of ``client`` (``CALENDAR_CLIENTS``)."""
    inv = _invitation(invitation_raw)
    date = date or dt.datetime.now(dt.UTC)
    title = str(inv.event["SUMMARY"])
    ics = _calendar(client, inv, attendee, name, partstat, comment, date)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((name, attendee))
    msg["To"] = email.utils.formataddr((inv.organizer_name, inv.organizer))
    msg["Subject"] = _SUBJECTS[client][partstat] + title
    msg["Date"] = email.utils.format_datetime(date)
    seed = hashlib.sha256(f"{client}{attendee}{partstat}{date}{ics}".encode()).hexdigest()
    domain = {"outlook": "PAXP192MB9466.prod.outlook.test", "gmail": "google.test"}
    msg["Message-ID"] = f"<{seed[:32]}@{domain.get(client, attendee.split('@')[1])}>"
    said = dict(accepted="a accepté", declined="a refusé", tentative="a accepté provisoirement")
    text = f"{name} {said[partstat]} votre invitation : {title}"
    if client == "outlook":
        # Outlook answers in the invitation's thread; the body is the comment.
        msg["In-Reply-To"] = inv.message_id
        msg["References"] = inv.message_id
        msg["Thread-Topic"] = title
        msg["Thread-Index"] = base64.b64encode(bytes.fromhex(seed[:44])).decode()
        msg.set_content(comment or "", cte="base64")
        msg.add_alternative(f"<html><body><div>{comment}</div></body></html>", subtype="html",
                            cte="base64")  # fmt: skip
        _add_calendar(msg, ics, "base64")
    elif client == "gmail":
        body = f"{text}" + (f" et a répondu : « {comment} »" if comment else "")
        msg.set_content(body, cte="base64")
        msg.add_alternative(f"<p>{body}</p>", subtype="html", cte="quoted-printable")
        _add_calendar(msg, ics, "8bit")
        msg.make_mixed()
        msg.add_attachment(ics.encode(), "application", "ics", filename="invite.ics")
    elif client == "thunderbird":
        msg["User-Agent"] = "Mozilla Thunderbird"
        msg.set_content(text + "\n", cte="8bit")
        _add_calendar(msg, ics, "8bit")
        msg.make_mixed()
    else:
        msg["X-Mailer"] = "Apple Mail (2.3826.200.121)"
        msg.set_content(text + "\n", cte="quoted-printable")
        msg.add_attachment(ics.encode(), "text", "calendar", filename="iCal-reply.ics",
                           params={"method": "REPLY"}, cte="quoted-printable")  # fmt: skip
    return msg.as_bytes()


def _add_calendar(msg: EmailMessage, ics: str, cte: str) -> None:
    msg.add_alternative(ics, subtype="calendar", cte=cte, params={"method": "REPLY"})
