"""Rendered mail into a message ready for SMTP: the stdlib's MIME classes, CRLF line ends.

Apart from ``render`` so that the commands which only show text (``mailflow status``)
need not import the MIME classes.
"""

from __future__ import annotations

import datetime as dt
import email
import email.utils
from email.charset import QP, Charset
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr

from .render import Attachment, Rendered, short

# Quoted-printable UTF-8 bodies. MIMEText takes a Charset, though typeshed declares str.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_CRLF = compat32.clone(linesep="\r\n")


def _header(name: str, value: str) -> str:
    value = short(value)
    return value if value.isascii() else Header(value, "utf-8", header_name=name).encode()


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    sender_name: str,
    to: list[str],
    reply_to: str,
    message_id: str,
    date: dt.datetime,
    attachments: tuple[Attachment, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A multipart/alternative message (plus attachments) ready for SMTP, CRLF line ends.

    ``date`` is given in the programme's time zone, so that the ``Date:`` header reads
    09:00 +0100 rather than 08:00 +0000 in clients that show it raw.

    Built with the stdlib's compat32 classes: three times faster than ``EmailMessage``,
    which matters when a Friday renders a mail per défi.
    """
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(rendered.text, "plain", _UTF8_QP))  # type: ignore[arg-type]
    if rendered.html is not None:
        body.attach(MIMEText(rendered.html, "html", _UTF8_QP))  # type: ignore[arg-type]
    for part in attachments:
        if part.inline:
            body.attach(_part(part))
    extra = [_part(p) for p in attachments if not p.inline]
    if extra:
        msg: MIMEBase = MIMEMultipart("mixed")
        msg.attach(body)
        for item in extra:
            msg.attach(item)
    else:
        msg = body
    msg["From"] = formataddr((sender_name, sender), charset="utf-8")
    msg["To"] = ", ".join(to)
    msg["Reply-To"] = reply_to
    msg["Subject"] = _header("Subject", rendered.subject)
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message_id
    # RFC 3834: out-of-office robots must not answer; Exchange's own switch for the same.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in headers:
        msg[name] = _header(name, value)
    return msg.as_bytes(policy=_CRLF)


def rewrap(raw: bytes, *, subject: str, to: list[str], message_id: str, date: dt.datetime) -> bytes:
    """A message already sent, sent again: the same body, From and Reply-To, new To,
    Subject, Date and Message-ID (a new mail, which clients do not take for a duplicate)."""
    msg = email.message_from_bytes(raw)
    for name in ("To", "Cc", "Subject", "Date", "Message-ID"):
        del msg[name]
    msg["To"] = ", ".join(to)
    msg["Subject"] = _header("Subject", subject)
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message_id
    return msg.as_bytes(policy=_CRLF)


def _part(part: Attachment) -> MIMEBase:
    if part.maintype == "text":
        item: MIMEBase = MIMEText(part.content.decode("utf-8"), part.subtype, _UTF8_QP)  # type: ignore[arg-type]
    else:
        item = MIMEApplication(part.content, part.subtype)
    for key, value in part.params:
        item.set_param(key, value)
    if part.filename:
        disposition = "inline" if part.inline else "attachment"
        item.add_header("Content-Disposition", disposition, filename=part.filename)
    return item
