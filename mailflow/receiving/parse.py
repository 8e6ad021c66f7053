"""One raw message turned into a plain ``ParsedMessage``: who, what, in answer to what, and
what the sender wrote, split into the sections a workflow collects.

``parse_message`` never raises on malformed mail: it returns what it could recover and
lists what was wrong in ``warnings``. Its work is bounded (see ``bounded`` and ``mime``);
display strings (subject, names) are at most ``MAX_DISPLAY`` characters. ``parse_header``
gives what the header alone says of a message that could not be read, and why.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import absence, automatic, lists
from .bounded import MAX_FIELD, MAX_FIELDS, MAX_HEADER, CappedMessage, read_message
from .calendar import read_reply
from .mime import BodyText, addresses, body_text, decode_header, unfold
from .reply import ReplyContext, extract_reply, looks_forwarded
from .sections import SectionSpec

Headers = dict[str, list[str]]  # by lower-case name

_MSGID = re.compile(r"<[^<>\s]+>")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_DISPLAY = 998  # characters of a subject or a name: the longest line a mail may have


@dataclass(frozen=True)
class ParsedMessage:
    """What mailflow understands of a message; ``to_json`` gives the documented contract."""

    message_id: str | None
    from_address: str | None
    from_name: str
    subject: str
    date: str | None
    # The person who wrote it: From, or the author a mailing list moved out of From.
    author: str | None = None
    senders: tuple[str, ...] = ()  # every address of every From header (one, normally)
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    delivered_to: tuple[str, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    automatic: str | None = None
    automatic_reason: str = ""
    bounced_recipient: str | None = None
    bounce_status: str | None = None  # the DSN status of that recipient: 5.x.x is final
    text: str = ""
    sections: dict[str, str | None] = field(default_factory=dict)
    fields: dict[str, str | None] = field(default_factory=dict)
    # {"uid", "attendee", "partstat"} of a reply to a calendar invitation (iMIP).
    calendar_reply: dict[str, str] | None = None
    absent_until: str | None = None  # ISO date: the last day of absence an auto-reply gives
    attachments: tuple[str, ...] = ()
    authentication_results: tuple[str, ...] = ()
    from_html: bool = False
    warnings: tuple[str, ...] = ()
    # Why the message could not be read ("too large: …", "parse failed: …"); what is
    # above then comes from its header alone.
    unreadable: str | None = None

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers, nearest first (In-Reply-To, then References)."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)

    def to_json(self) -> dict[str, Any]:
        # Shallow, field by field: asdict's deep copy cost more than the rest of storing it.
        data = {}
        for f in _FIELDS:
            value = getattr(self, f)
            data[f] = list(value) if isinstance(value, tuple) else value
        for key in ("sections", "fields", "calendar_reply"):
            data[key] = dict(data[key]) if data[key] is not None else None
        data["from"] = data.pop("from_address")
        order = ["message_id", "from", "author", "from_name", "subject", "date", "automatic",
                 "bounced_recipient", "calendar_reply", "absent_until", "text", "sections",
                 "fields", "attachments"]  # fmt: skip
        return {k: data[k] for k in order} | {k: v for k, v in data.items() if k not in order}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParsedMessage:
        data = dict(data)
        data["from_address"] = data.pop("from")
        data.setdefault("author", data["from_address"])  # stored before authors were read
        for key, value in data.items():
            if isinstance(value, list):
                data[key] = tuple(value)
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(ParsedMessage))


def display(text: str, cut: bool = False) -> str:
    """``text`` within ``MAX_DISPLAY`` characters, "…" marking what was cut (or ``cut``)."""
    if len(text) <= MAX_DISPLAY and not cut:
        return text
    return text[: MAX_DISPLAY - 1].rstrip() + "…"


class _Decoded(dict[str, list[str]]):
    """Header values by lower-case name, decoded when first asked for with ``get``
    (most of a header is never read: Received, DKIM, ARC…)."""

    def __init__(self, raw: dict[str, list[str]]) -> None:
        super().__init__()
        self.raw = raw

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            if key not in self.raw:
                return default
            self[key] = [decode_header(v) for v in self.raw[key]]
        return self[key]


def _headers(msg: Any) -> tuple[Headers, Headers]:
    """Every header by lower-case name: decoded (on demand), and raw (for addresses)."""
    raw: dict[str, list[str]] = defaultdict(list)
    for name, value in msg.raw_items():
        raw[name.lower()].append(str(value))
    return _Decoded(raw), raw


def _first(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0] if values else ""


def _date(value: str, warnings: list[str]) -> str | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        warnings.append(f"unreadable Date header {display(value)[:200]!r}")
        return None
    return parsed.isoformat()


def _empty(spec: SectionSpec | None, kind: str) -> dict[str, str | None]:
    keys = () if spec is None else spec.section_keys if kind == "section" else spec.field_keys
    return dict.fromkeys(keys)


def parse_message(raw: bytes, spec: SectionSpec | None = None) -> ParsedMessage:
    """Interpret a raw message; ``spec`` names the sections to split the reply into."""
    try:
        msg, warnings = read_message(raw)
        headers, raw_headers = _headers(msg)
    except Exception as e:  # the stdlib parser gave up: report it, keep going with nothing
        return ParsedMessage(
            None, None, "", "", None,
            sections=_empty(spec, "section"), fields=_empty(spec, "field"),
            warnings=(f"unparseable message: {type(e).__name__}: {e}",),
        )  # fmt: skip
    warnings.extend(_cut_headers(msg))
    senders = [a for value in raw_headers.get("from", []) for a in addresses(value)]
    sender = senders or addresses(_first(raw_headers, "sender"))
    if not sender:
        warnings.append("no usable From header")
    subject = display(_first(headers, "subject"), "subject" in msg.capped)
    name = display(sender[0][0], "from" in msg.capped) if sender else ""
    from_address = sender[0][1] if sender else None
    author, author_name = lists.author(raw_headers, from_address, name)
    message_ids = _MSGID.findall(_first(headers, "message-id"))
    if not message_ids:
        warnings.append("no Message-ID header")
    date = _date(_first(headers, "date"), warnings)
    body = body_text(msg)
    warnings.extend(body.warnings)
    return ParsedMessage(
        message_id=message_ids[0] if message_ids else None,
        from_address=from_address,
        from_name=name,
        subject=subject,
        date=date,
        author=author,
        senders=tuple(a for _, a in senders),
        **_addressing(headers, raw_headers),
        **_reading(msg, headers, raw_headers, body, spec, (author, author_name, subject, date)),
        attachments=tuple(display(a) for a in body.attachments),
        # Read raw, never decoded: an encoded word is no authserv-id (RFC 8601), and
        # decoding one would let a sender write the trusted server's name unseen by it.
        authentication_results=tuple(map(unfold, raw_headers.get("authentication-results", []))),
        from_html=body.from_html,
        warnings=tuple(warnings),
    )


def _addressing(headers: Headers, raw_headers: Headers) -> dict[str, Any]:
    """Who a message was sent to, and which messages it answers."""

    def listed(*names: str) -> tuple[str, ...]:
        return tuple(a for h in names for _, a in addresses(", ".join(raw_headers.get(h, []))))

    return {
        "to": listed("to"),
        "cc": listed("cc"),
        "reply_to": tuple(a for _, a in addresses(_first(raw_headers, "reply-to"))),
        "delivered_to": listed("delivered-to", "x-original-to", "envelope-to"),
        "in_reply_to": tuple(_MSGID.findall(_first(headers, "in-reply-to"))),
        "references": tuple(_MSGID.findall(" ".join(headers.get("references", [])))),
    }


def _reading(
    msg: CappedMessage, headers: Headers, raw_headers: Headers, body: BodyText,
    spec: SectionSpec | None, about: tuple[str | None, str, str, str | None],
) -> dict[str, Any]:  # fmt: skip
    """What a message is (automatic, a calendar reply) and what its sender wrote.

    ``about`` is (author, author's name, subject, date).
    """
    author, author_name, subject, date = about
    verdict = automatic.classify(msg, headers, raw_headers, body.text)
    invitation = read_reply(body.calendars, author) if body.calendars else None
    text, sections, fields = _content(body, spec, author_name, subject, "list-id" in raw_headers)
    if invitation is not None:
        # What the attendee wrote is their comment; the rest is the client's own wording.
        outlook = "microsoft" in invitation.producer.lower()
        text = invitation.comment or (text if outlook else "")
        sections, fields = _empty(spec, "section"), _empty(spec, "field")
    elif verdict.kind is None and _away(text, sections, fields):
        verdict = automatic.Classification(automatic.AUTO_REPLY, None, "out-of-office text")
    until = _absent_until(verdict, [text, subject, body.text], date)
    if verdict.kind is not None:
        sections, fields = _empty(spec, "section"), _empty(spec, "field")
    return {
        "automatic": verdict.kind,
        "automatic_reason": display(verdict.reason),
        "bounced_recipient": verdict.bounced_recipient,
        "bounce_status": verdict.status,
        "text": text,
        "sections": sections,
        "fields": fields,
        "calendar_reply": invitation.as_json() if invitation else None,
        "absent_until": until,
    }


def _absent_until(
    verdict: automatic.Classification, texts: list[str], date: str | None
) -> str | None:
    """The last day of absence an auto-reply gives (ISO date), years read from its Date."""
    if verdict.kind != automatic.AUTO_REPLY:
        return None
    found = absence.absent_until(texts, dt.date.fromisoformat(date[:10]) if date else None)
    return found.isoformat() if found else None


def _away(text: str, sections: dict[str, str | None], fields: dict[str, str | None]) -> bool:
    """An out-of-office without any automatic marker: short, no section, says "away"."""
    return not any(sections.values()) and not any(fields.values()) and absence.looks_away(text)


def _cut_headers(msg: CappedMessage) -> list[str]:
    """What was left out of the header fields, for the warnings."""
    cut = [f"{name} header longer than {MAX_FIELD:,} characters: cut" for name in msg.capped]
    if msg.ignored:
        cut.append(f"{msg.ignored} header fields past the first {MAX_FIELDS:,} ignored")
    return cut


def parse_header(raw: bytes, unreadable: str, spec: SectionSpec | None = None) -> ParsedMessage:
    """What the header of ``raw`` alone says (sender, subject, thread), and ``unreadable``.

    For a message stored header-only or that could not be parsed: nothing of its body
    is read, its sections are empty; a header that cannot be read either gives a record
    with nothing but the reason.
    """
    end = _HEADER_END.search(raw, 0, MAX_HEADER)
    head = raw[: end.end() if end else MAX_HEADER]
    try:
        parsed = parse_message(head if end else head + b"\r\n\r\n", spec)
    except Exception as e:  # the header itself breaks the parser: keep the reason at least
        parsed = ParsedMessage(
            None, None, "", "", None,
            sections=_empty(spec, "section"), fields=_empty(spec, "field"),
            warnings=(f"header unparseable: {type(e).__name__}: {e}",),
        )  # fmt: skip
    return replace(parsed, text="", from_html=False, attachments=(), unreadable=unreadable)


def _content(
    body: BodyText, spec: SectionSpec | None, sender_name: str, subject: str, from_list: bool
) -> tuple[str, dict[str, str | None], dict[str, str | None]]:
    ctx = ReplyContext(
        sender_name=sender_name,
        is_forward=looks_forwarded(subject),
        is_heading=spec.is_heading if spec else ReplyContext().is_heading,
        from_list=from_list,
    )
    text = extract_reply(body.text, ctx)
    if spec is None:
        return text, {}, {}
    split = spec.split(text)
    sections = {k: split[k] for k in spec.section_keys}
    fields = {k: split[k] for k in spec.field_keys}
    return text, sections, fields
