"""Recognising automatic mail: bounces and auto-replies, by headers first, as MTAs do.

A bounce is recognised before an auto-reply, because some MTAs mark their delivery
reports ``Auto-Submitted`` too. A human reply that carries service headers such as
``Feedback-ID`` or Exchange's ``X-Auto-Response-Suppress`` (a request *to* other
auto-responders, not a sign of one) is not automatic, and neither is ``Precedence: list``:
it marks what a mailing list relayed (Sympa, Mailman), a person's mail as often as not,
judged by its content like any other.
"""

from __future__ import annotations

import email.message
import re
from dataclasses import dataclass

from .mime import addresses, decode_header
from .sections import normalize

BOUNCE = "bounce"
_DSN = "message/delivery-status"
AUTO_REPLY = "auto-reply"

_DAEMONS = re.compile(
    r"^(mailer-daemon|postmaster|mail-delivery-subsystem|mdaemon|mailerdaemon)@", re.I
)
_DAEMON_NAMES = re.compile(r"mail delivery (system|subsystem)|mailer.?daemon|postmaster", re.I)
# Matched on the subject without accents, lower case; "r.?ponse" also survives a client
# that dropped the undecodable byte of an 8-bit "Réponse".
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliverable|undelivered mail|undeliverable mail|delivery status notification"
    r"|delivery (has )?failed|mail delivery failed|failure notice|returned mail"
    r"|message not delivered|delivery failure|non remis|non distribuable|message non remis"
    r"|echec de (la )?remise|remise impossible|notification d'etat de (la )?remise"
    r"|non-remise|impossible de remettre)",
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(r.?ponse automatique|reponse auto|absence du bureau|absente? du bureau"
    r"|message d'absence|notification d'absence|je suis absente?|en conge|absent\(e\)"
    r"|absente? jusqu"
    r"|out of (the )?office|ooo\b|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response"
    r"|auto:|automatische antwort|abwesenheitsnotiz|respuesta automatica|risposta automatica"
    r"|i am (currently )?out of|away from (the )?office|vacation reply|on vacation)",
)
_FAILED_LINE = re.compile(
    r"^(final-recipient|original-recipient)\s*:\s*(?:rfc822\s*;)?\s*(.+)$", re.I
)
# Tried only where a run of address characters starts: from inside one it is the same
# match or none, and trying each position made a long run quadratic.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_STATUS = re.compile(r"^status\s*:\s*([245]\.\d{1,3}\.\d{1,3})", re.I | re.M)
# An enhanced status code after an SMTP reply code ("550 5.1.1", "451-4.7.1") or qmail's
# "(#5.1.1)", for bounces without a delivery-status part.
_TEXT_STATUS = re.compile(r"(?:\b[245]\d\d[ -]|#)([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class Classification:
    """``kind`` is None for a human message, else "bounce" or "auto-reply"."""

    kind: str | None
    bounced_recipient: str | None = None
    reason: str = ""
    # A bounce's status for its recipient ("5.1.1" final, "4.4.7" delayed), when it says.
    status: str | None = None


def _header(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0].strip() if values else ""


def _dsn_recipients(msg: email.message.Message) -> list[tuple[str, str | None]]:
    """(recipient, status) named in a message/delivery-status part, ``Action: failed`` first."""
    failed: list[tuple[str, str | None]] = []
    other: list[tuple[str, str | None]] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        texts = [str(b) for b in blocks] if isinstance(blocks, list) else [str(blocks)]
        for block in texts:
            action = re.search(r"^action\s*:\s*(\w+)", block, re.I | re.M)
            status = _STATUS.search(block)
            for line in block.splitlines():
                m = _FAILED_LINE.match(line.strip())
                if m:
                    found = _EMAIL.search(decode_header(m.group(2)))
                    if found:
                        target = failed if action and action.group(1).lower() == "failed" else other
                        target.append((found.group(0).lower(), status.group(1) if status else None))
    return failed + other


def _recipient_in_text(text: str, exclude: set[str]) -> str | None:
    for found in _EMAIL.finditer(text):
        address = found.group(0).lower().strip(".")
        if address not in exclude and not _DAEMONS.match(address):
            return address
    return None


def _is_report(msg: email.message.Message, report_type: str) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == report_type
    )


def classify(
    msg: email.message.Message,
    headers: dict[str, list[str]],
    raw_headers: dict[str, list[str]],
    text: str,
) -> Classification:
    """Classify a message from its headers (decoded and raw, lower-case names) and text."""
    subject = normalize(_header(headers, "subject"))
    sender = addresses(_header(raw_headers, "from"))
    sender_address = sender[0][1] if sender else ""
    sender_name = sender[0][0] if sender else ""
    own = {a.lower() for _, a in addresses(_header(raw_headers, "to"))} | {sender_address.lower()}

    reason = ""
    if _is_report(msg, "delivery-status") or (
        msg.is_multipart() and any(p.get_content_type() == _DSN for p in msg.walk())
    ):
        reason = "delivery status report"
    elif headers.get("x-failed-recipients"):
        reason = "X-Failed-Recipients header"
    elif _DAEMONS.match(sender_address) or _DAEMON_NAMES.search(sender_name):
        reason = f"sent by {sender_address or sender_name}"
    elif _BOUNCE_SUBJECT.match(subject):
        reason = "bounce subject"
    if reason:
        recipients = _dsn_recipients(msg)
        failed = _header(headers, "x-failed-recipients")
        if not recipients and failed:
            recipients = [(m.group(0).lower(), None) for m in _EMAIL.finditer(failed)]
        recipient, status = recipients[0] if recipients else (_recipient_in_text(text, own), None)
        if status is None:
            found = _TEXT_STATUS.search(text)
            status = found.group(1) if found else None
        return Classification(BOUNCE, recipient, reason, status)

    auto_submitted = _header(headers, "auto-submitted").lower()
    precedence = _header(headers, "precedence").lower()
    return_path = _header(headers, "return-path")
    if auto_submitted and not auto_submitted.startswith("no"):
        reason = f"Auto-Submitted: {auto_submitted}"
    elif any(headers.get(h) for h in ("x-autoreply", "x-autorespond", "x-autoresponder")):
        reason = "X-Autoreply header"
    elif precedence in ("bulk", "junk", "auto_reply"):
        reason = f"Precedence: {precedence}"
    elif _is_report(msg, "disposition-notification"):
        reason = "read receipt"
    elif _AUTO_SUBJECT.match(subject):
        reason = "auto-reply subject"
    elif return_path.replace(" ", "") == "<>":
        reason = "null return path"
    if reason:
        return Classification(AUTO_REPLY, None, reason)
    return Classification(None)
