"""Replies formatted as real mail clients write them, for tests, the demo and benchmarks.

Each builder takes the request being answered (raw bytes, as the recipient received it)
and returns the raw reply that Gmail, Outlook, Thunderbird or an iPhone would send: their
headers, MIME structure, transfer encodings, attribution lines and quoting style, in
French or English. Also an Exchange out-of-office and a Postfix bounce.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import html
from email.message import EmailMessage
from typing import Any

from ..receiving.mime import addresses, body_text, decode_header

CLIENTS = ("gmail", "outlook", "thunderbird", "thunderbird-inline", "iphone")

_DAYS = {
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
}
_MONTHS = {
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"],
    "en": ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"],
}  # fmt: skip
_MONTHS_SHORT_FR = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août",
                    "sept.", "oct.", "nov.", "déc."]  # fmt: skip


class _Request:
    """What a client reads from the message it answers."""

    def __init__(self, raw: bytes) -> None:
        msg = email.message_from_bytes(raw)
        self.message_id = str(msg.get("Message-ID", "")).strip()
        self.references = str(msg.get("References", "")).split()
        self.subject = decode_header(msg.get("Subject", ""))
        sender = addresses(str(msg.get("From", "")))
        self.from_name, self.from_address = sender[0] if sender else ("", "")
        self.to = decode_header(msg.get("To", ""))
        self.reply_to = decode_header(msg.get("Reply-To", "")) or decode_header(msg.get("From", ""))
        date = msg.get("Date")
        self.date = email.utils.parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)
        self.text = body_text(msg).text


def _message_id(seed: str, domain: str) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"<{digest[:32]}@{domain}>"


def _base(
    request: _Request, sender: str, name: str, date: dt.datetime, subject_prefix: str = "Re: "
) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((name, sender))
    msg["To"] = request.reply_to
    msg["Subject"] = subject_prefix + request.subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["In-Reply-To"] = request.message_id
    msg["References"] = " ".join([*request.references, request.message_id])
    return msg


def _quote(text: str) -> str:
    return "\n".join(">" if not line else f"> {line}" for line in text.split("\n"))


def _html_lines(text: str) -> str:
    return "".join(f"<div>{html.escape(line) or '<br>'}</div>" for line in text.split("\n"))


def _when(request: _Request, tz: dt.tzinfo | None = None) -> dt.datetime:
    return request.date.astimezone(tz) if tz else request.date


def gmail(request_raw: bytes, sender: str, name: str, body: str, *, lang: str = "fr",
          date: dt.datetime | None = None) -> bytes:  # fmt: skip
    """Gmail web: top-posted, "Le ven. 27 nov. 2026 à 09:00, X <x> a écrit :", QP parts."""
    request = _Request(request_raw)
    date = date or dt.datetime.now(dt.UTC)
    when = _when(request)
    who = f"{request.from_name} <{request.from_address}>"
    if lang == "fr":
        day = _DAYS["fr"][when.weekday()][:3] + "."
        attribution = (
            f"Le {day} {when.day} {_MONTHS_SHORT_FR[when.month - 1]} {when.year} à "
            f"{when:%H:%M}, {who} a écrit :"
        )
    else:
        attribution = (
            f"On {when:%a}, {when:%b} {when.day}, {when.year} at "
            f"{when.strftime('%I:%M %p').lstrip('0')} {who} wrote:"
        )
    msg = _base(request, sender, name, date)
    msg["Message-ID"] = _message_id(sender + body + str(date), "mail.gmail.test")
    plain = f"{body}\n\n{attribution}\n\n{_quote(request.text)}\n"
    rich = (
        f'<div dir="ltr">{_html_lines(body)}</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">{html.escape(attribution)}<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
        f'border-left:1px solid rgb(204,204,204);padding-left:1ex">{_html_lines(request.text)}'
        "</blockquote></div>"
    )
    msg.set_content(plain, cte="quoted-printable")
    msg.add_alternative(rich, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def outlook(request_raw: bytes, sender: str, name: str, body: str, *, lang: str = "fr",
            date: dt.datetime | None = None) -> bytes:  # fmt: skip
    """Outlook desktop: top-posted, an underscore line and a "De : / Envoyé : …" block."""
    request = _Request(request_raw)
    date = date or dt.datetime.now(dt.UTC)
    when = _when(request)
    nbsp = "\u00a0"
    if lang == "fr":
        labels = (f"De{nbsp}:", f"Envoyé{nbsp}:", f"À{nbsp}:", f"Objet{nbsp}:")
        sent = (
            f"{_DAYS['fr'][when.weekday()]} {when.day} {_MONTHS['fr'][when.month - 1]} "
            f"{when.year} {when:%H:%M}"
        )
        prefix = "RE : "
    else:
        labels = ("From:", "Sent:", "To:", "Subject:")
        sent = (
            f"{_DAYS['en'][when.weekday()]}, {_MONTHS['en'][when.month - 1]} {when.day}, "
            f"{when.year} {when.strftime('%I:%M %p').lstrip('0')}"
        )
        prefix = "RE: "
    values = (f"{request.from_name} <{request.from_address}>", sent, request.to, request.subject)
    block = "\n".join(f"{label} {value}" for label, value in zip(labels, values, strict=True))
    msg = _base(request, sender, name, date, subject_prefix=prefix)
    msg["Message-ID"] = _message_id(sender + body + str(date), "PR3P250MB0123.eurprd02.prod.test")
    msg["Thread-Topic"] = request.subject
    msg["Thread-Index"] = base64.b64encode(hashlib.md5(body.encode()).digest()[:22]).decode()
    msg["Accept-Language"] = "fr-FR, en-US" if lang == "fr" else "en-US"
    msg["Content-Language"] = "fr-FR" if lang == "fr" else "en-US"
    msg["X-MS-Has-Attach"] = ""
    msg["X-Auto-Response-Suppress"] = "All"  # Outlook sets it on human mail too
    plain = f"{body}\n\n________________________________\n{block}\n\n{request.text}\n"
    header_html = "<br>".join(
        f"<b>{html.escape(label)}</b> {html.escape(value)}"
        for label, value in zip(labels, values, strict=True)
    )
    rich = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        "<style>p.MsoNormal{margin:0cm;}</style></head><body><div class=WordSection1>"
        + "".join(
            f"<p class=MsoNormal>{html.escape(line) or '<o:p>&nbsp;</o:p>'}</p>"
            for line in body.split("\n")
        )
        + '</div><hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr">'
        f'<font face="Calibri, sans-serif" style="font-size:11pt">{header_html}</font>'
        f"<div>&nbsp;</div></div><div>{_html_lines(request.text)}</div></body></html>"
    )
    msg.set_content(plain, cte="quoted-printable")
    msg.add_alternative(rich, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def thunderbird(request_raw: bytes, sender: str, name: str, body: str, *, lang: str = "fr",
                date: dt.datetime | None = None,
                inline: dict[str, str] | None = None) -> bytes:  # fmt: skip
    """Thunderbird: plain text, the reply below the quote or inline under quoted headings.

    ``inline`` maps a line of the request (a heading) to the answer written under it.
    """
    request = _Request(request_raw)
    date = date or dt.datetime.now(dt.UTC)
    when = _when(request)
    if lang == "fr":
        attribution = f"Le {when:%d/%m/%Y} à {when:%H:%M}, {request.from_name} a écrit :"
    else:
        attribution = (
            f"On {when.month}/{when.day}/{when:%y} {when.strftime('%I:%M %p').lstrip('0')}, "
            f"{request.from_name} wrote:"
        )
    msg = _base(request, sender, name, date)
    msg["Message-ID"] = _message_id(sender + body + str(date), "bulletins.test")
    msg["User-Agent"] = "Mozilla Thunderbird"
    msg["Content-Language"] = "fr" if lang == "fr" else "en-US"
    if inline:
        lines = [attribution]
        for line in request.text.split("\n"):
            lines.append(">" if not line else f"> {line}")
            if line.strip() in inline:
                lines.extend([inline[line.strip()], ""])
        plain = "\n".join(lines) + ("\n\n" + body if body else "") + "\n"
    else:
        plain = f"{attribution}\n{_quote(request.text)}\n\n{body}\n"
    msg.set_content(plain, cte="8bit")
    msg.set_param("format", "flowed")
    return msg.as_bytes()


def iphone(request_raw: bytes, sender: str, name: str, body: str, *, lang: str = "fr",
           date: dt.datetime | None = None) -> bytes:  # fmt: skip
    """iOS Mail: top-posted, "Envoyé de mon iPhone", the attribution itself quoted."""
    request = _Request(request_raw)
    date = date or dt.datetime.now(dt.UTC)
    when = _when(request)
    who = f"{request.from_name} <{request.from_address}>"
    if lang == "fr":
        footer = "Envoyé de mon iPhone"
        attribution = (
            f"Le {when.day} {_MONTHS_SHORT_FR[when.month - 1]} {when.year} à {when:%H:%M}, "
            f"{who} a écrit :"
        )
    else:
        footer = "Sent from my iPhone"
        attribution = f"On {when:%b} {when.day}, {when.year}, at {when:%H:%M}, {who} wrote:"
    msg = _base(request, sender, name, date)
    msg["Message-ID"] = _message_id(sender + body + str(date), "icloud.test")
    msg["X-Mailer"] = "iPhone Mail (22B91)"
    plain = f"{body}\n\n{footer}\n\n{_quote(attribution)}\n>\n{_quote(request.text)}\n"
    msg.set_content(plain, cte="quoted-printable")
    return msg.as_bytes()


def out_of_office(request_raw: bytes, sender: str, name: str, *, lang: str = "fr",
                  date: dt.datetime | None = None) -> bytes:  # fmt: skip
    """An Exchange automatic reply (out of office)."""
    request = _Request(request_raw)
    date = date or dt.datetime.now(dt.UTC)
    msg = _base(
        request,
        sender,
        name,
        date,
        "Réponse automatique : " if lang == "fr" else "Automatic reply: ",
    )
    msg["Message-ID"] = _message_id("oof" + sender + str(date), "PR3P250MB0456.eurprd02.prod.test")
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-MS-Exchange-Inbox-Rules-Loop"] = sender
    text = (
        "Bonjour,\n\nJe suis absente du bureau jusqu'au 7 décembre, avec un accès limité à "
        "mes mails.\n\nCordialement,\n" + name
        if lang == "fr"
        else "Hello,\n\nI am out of the office until December 7th with limited access to "
        "email.\n\nBest regards,\n" + name
    )
    msg.set_content(text, cte="quoted-printable")
    return msg.as_bytes()


def bounce(request_raw: bytes, failed: str, *, mta: str = "mx.programme.test",
           date: dt.datetime | None = None) -> bytes:  # fmt: skip
    """A Postfix delivery status notification: ``failed`` does not exist."""
    request = _Request(request_raw)
    date = date or dt.datetime.now(dt.UTC)
    boundary = hashlib.md5(failed.encode()).hexdigest()[:16].upper() + "." + mta
    original = email.message_from_bytes(request_raw)
    headers_only = "".join(f"{k}: {v}\r\n" for k, v in original.items())
    text = (
        f"This is the mail system at host {mta}.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n\r\n"
        "                   The mail system\r\n\r\n"
        f"<{failed}>: host mail.{failed.split('@')[1]}[192.0.2.25] said: 550 5.1.1\r\n"
        f"    <{failed}>: Recipient address rejected: User unknown in virtual mailbox\r\n"
        "    table (in reply to RCPT TO command)\r\n"
    )
    status = (
        f"Reporting-MTA: dns; {mta}\r\nX-Postfix-Queue-ID: 4N9z8KHfhdNR\r\n"
        f"Arrival-Date: {email.utils.format_datetime(request.date)}\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nOriginal-Recipient: rfc822;{failed}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        f"Remote-MTA: dns; mail.{failed.split('@')[1]}\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{failed}>: Recipient address rejected\r\n"
    )
    raw = (
        f"Return-Path: <>\r\nDate: {email.utils.format_datetime(date)}\r\n"
        f"From: MAILER-DAEMON@{mta} (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"To: {request.from_address}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        f"Message-Id: <{boundary}@{mta}>\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\nContent-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n"
        f"--{boundary}\r\nContent-Description: Delivery report\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n{status}\r\n"
        f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n{headers_only}\r\n--{boundary}--\r\n"
    )
    return raw.encode("utf-8")


def reply(client: str, request_raw: bytes, sender: str, name: str, body: str, **kw: Any) -> bytes:
    """Dispatch by client name (see ``CLIENTS``)."""
    if client == "thunderbird-inline":
        return thunderbird(request_raw, sender, name, "", **kw)
    builders: dict[str, Any] = {
        "gmail": gmail, "outlook": outlook, "thunderbird": thunderbird, "iphone": iphone,
    }  # fmt: skip
    return bytes(builders[client](request_raw, sender, name, body, **kw))
