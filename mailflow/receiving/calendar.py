"""Replies to calendar invitations (iMIP, RFC 6047): who answered which event, and how.

A reply is a ``text/calendar`` part whose calendar has ``METHOD:REPLY``; its first
event gives the ``UID`` and the attendee's ``PARTSTAT``. Outlook, Gmail, Thunderbird
and Apple Calendar all send one, whatever the language of their subject ("Accepté :",
"Invitation acceptée :", "Accepted:"). The attendee's comment is the event's
``COMMENT``, or Gmail's ``X-RESPONSE-COMMENT`` parameter of the attendee. A reply to one
occurrence of a series has its ``RECURRENCE-ID`` (value, and time zone when it has one).

A small reader of its own rather than ``icalendar``: a reply has a handful of lines,
and this reads every client's without failing on what ``icalendar`` rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PARTSTATS = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentative"}
_FOLD = re.compile(r"\r?\n[ \t]")
_PARAM = re.compile(r';([A-Za-z0-9-]+)=("[^"]*"|[^;:"]*)')
_ESCAPE = re.compile(r"\\([\\;,nN])")
MAX_LINES = 2_000  # a reply has a few dozen; a crafted one must not cost more


@dataclass(frozen=True)
class Property:
    name: str
    params: dict[str, str]
    value: str


@dataclass(frozen=True)
class CalendarReply:
    uid: str
    attendee: str
    partstat: str
    comment: str = ""
    producer: str = ""  # PRODID: which client wrote it
    recurrence_id: str = ""  # as written: 20270114T093000, 20270114T083000Z or 20270114
    recurrence_tz: str = ""  # its TZID, if any

    def as_json(self) -> dict[str, str]:
        found = {"uid": self.uid, "attendee": self.attendee, "partstat": self.partstat}
        if self.recurrence_id:
            found["recurrence_id"] = self.recurrence_id
            if self.recurrence_tz:
                found["recurrence_tz"] = self.recurrence_tz
        return found


def _properties(text: str) -> list[Property]:
    result = []
    for line in _FOLD.sub("", text).splitlines()[:MAX_LINES]:
        head, value = _split(line)
        if head is None:
            continue
        name, _, rest = head.partition(";")
        params = {k.upper(): v.strip('"') for k, v in _PARAM.findall(";" + rest if rest else "")}
        result.append(Property(name.strip().upper(), params, value))
    return result


def _split(line: str) -> tuple[str | None, str]:
    """Name-and-parameters and value of a content line: the first colon outside quotes."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return line[:i], line[i + 1 :]
    return None, ""


def _text(value: str) -> str:
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value).strip()


def _address(value: str) -> str:
    value = value.strip()
    return value[7:].strip() if value.lower().startswith("mailto:") else value


def read_reply(calendars: list[str], sender: str | None = None) -> CalendarReply | None:
    """The iMIP reply among a message's calendar parts, or None."""
    for text in calendars:
        found = _reply(_properties(text), (sender or "").lower())
        if found is not None:
            return found
    return None


def _reply(props: list[Property], sender: str) -> CalendarReply | None:
    method = next((p.value.strip().upper() for p in props if p.name == "METHOD"), "")
    if method != "REPLY":
        return None
    producer = next((p.value for p in props if p.name == "PRODID"), "")
    uid, comment, attendees, depth = "", "", [], 0
    recurrence: Property | None = None
    for prop in props:
        if prop.name == "BEGIN" and prop.value.strip().upper() in ("VEVENT", "VTODO"):
            depth += 1
        elif prop.name == "END" and prop.value.strip().upper() in ("VEVENT", "VTODO"):
            break  # the first event is the one answered
        elif depth and prop.name == "UID":
            uid = prop.value.strip()
        elif depth and prop.name == "RECURRENCE-ID":
            recurrence = prop
        elif depth and prop.name == "COMMENT":
            comment = _text(prop.value)
        elif depth and prop.name == "ATTENDEE":
            attendees.append(prop)
    answers = [a for a in attendees if a.params.get("PARTSTAT", "").upper() in PARTSTATS]
    if not uid or not answers:
        return None
    # A reply names the attendee who answers; prefer the one who sent it.
    chosen = next((a for a in answers if _address(a.value).lower() == sender), answers[0])
    comment = comment or _text(chosen.params.get("X-RESPONSE-COMMENT", ""))
    partstat = PARTSTATS[chosen.params["PARTSTAT"].upper()]
    return CalendarReply(
        uid, _address(chosen.value).lower(), partstat, comment, producer,
        recurrence.value.strip() if recurrence else "",
        recurrence.params.get("TZID", "") if recurrence else "",
    )  # fmt: skip
