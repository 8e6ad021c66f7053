"""SMTP delivery of the outbox: one connection per batch, retries with backoff, no loops.

Each mail is claimed (marked ``sending`` and committed, only if nobody claimed it since
it was read) before the SMTP transaction, and marked ``sent`` right after the server
accepts it. A crash between the two leaves it ``sending``; it is sent again once its
ten-minute lease has run out: mailflow chooses at-least-once for the one mail
in flight, and the copy carries the same Message-ID, which lets mail clients that
deduplicate (Gmail does) drop it. A temporary failure (4xx, dropped connection) is
retried after 1 min, 5 min, 15 min, 1 h, 3 h, 6 h, then the mail is ``failed``; a
permanent one (5xx) fails at once. Recipients refused while others were accepted are
recorded on the row (``refused``) and flagged for the staff.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass, field

import sqlite_utils

from . import outbox
from .config import SmtpConfig, tls_context
from .db import now_utc, transaction
from .errors import MailServerError, SendError

log = logging.getLogger(__name__)

BACKOFF = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
_CONNECTION_ERRORS = (OSError, socket.timeout, ssl.SSLError, smtplib.SMTPServerDisconnected)


@dataclass
class DeliveryReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def connect(cfg: SmtpConfig) -> smtplib.SMTP:
    """A connected (and logged-in, when configured) SMTP client."""
    where = f"SMTP {cfg.host}:{cfg.port}"
    password = cfg.require_password()
    context = tls_context(cfg.ca_file)
    client: smtplib.SMTP | None = None
    try:
        if cfg.security == "tls":
            client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            if cfg.security == "starttls":
                client.starttls(context=context)
        client.ehlo_or_helo_if_needed()  # the session is up before any mail is marked
        if cfg.username:
            client.login(cfg.username, password or "")
    except smtplib.SMTPAuthenticationError as e:
        _close(client)
        raise MailServerError(f"{where}: login refused for {cfg.username} ({e.smtp_code})") from e
    except (*_CONNECTION_ERRORS, smtplib.SMTPException) as e:
        _close(client)
        raise MailServerError(f"{where}: cannot connect ({e})") from e
    return client


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        client.close()


def _connection_lost(error: Exception) -> bool:
    # SMTPException derives from OSError: an SMTP answer is not a lost connection.
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    return not isinstance(error, smtplib.SMTPException)


def _classify(error: Exception) -> SendError:
    """A ``SendError``, permanent only for a 5xx answer."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        permanent = all(500 <= c < 600 for c in codes)
        detail = "; ".join(
            f"{a}: {c} {m.decode(errors='replace')}" for a, (c, m) in error.recipients.items()
        )
        return SendError(f"all recipients refused: {detail}", permanent=permanent, code=max(codes))
    if isinstance(error, smtplib.SMTPResponseException):
        code = error.smtp_code
        message = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        return SendError(f"{code} {message}", permanent=500 <= code < 600, code=code)
    return SendError(f"connection lost: {error}", permanent=False)


def deliver(
    db: sqlite_utils.Database, cfg: SmtpConfig, now: dt.datetime, *, limit: int = 1000
) -> DeliveryReport:
    """Send what is due; a server that cannot be reached leaves everything queued."""
    report = DeliveryReport()
    pending = outbox.due(db, now, limit)
    if not pending:
        return report
    try:
        client = connect(cfg)
    except MailServerError as e:
        report.error = str(e)
        log.warning("%s; %d mails stay queued", e, len(pending))
        return report
    try:
        for mail in pending:
            if not _send_one(db, client, mail, now, report):
                break  # the connection is gone: the rest waits for the next delivery
    finally:
        try:
            client.quit()
        except (*_CONNECTION_ERRORS, smtplib.SMTPException):
            client.close()
    return report


def _send_one(
    db: sqlite_utils.Database,
    client: smtplib.SMTP,
    mail: outbox.Pending,
    now: dt.datetime,
    report: DeliveryReport,
) -> bool:
    """Send one mail and record the outcome; False when the connection is lost."""
    with transaction(db):
        if not outbox.claim(db, mail, now):
            return True  # another process took it meanwhile
    try:
        refused = client.sendmail(mail.sender, list(mail.to), mail.raw)
    except (*_CONNECTION_ERRORS, smtplib.SMTPException) as e:
        _record_failure(db, mail, _classify(e), now, report)
        return not _connection_lost(e)
    except Exception as e:  # e.g. an address smtplib cannot encode: that mail fails alone
        _record_failure(
            db, mail, SendError(f"{type(e).__name__}: {e}", permanent=True), now, report
        )
        return True
    refusals = {a: f"{c} {m.decode(errors='replace')}" for a, (c, m) in refused.items()}
    with transaction(db):
        outbox.mark(
            db, mail.id, "sent", now, error=None,
            refused=json.dumps(refusals) if refusals else None,
        )  # fmt: skip
        for address, (code, message) in refused.items():
            _flag_refused(db, address, f"{code} {message.decode(errors='replace')}", mail.key)
            report.refused[address] = f"{code}"
    report.sent += 1
    return True


def _record_failure(
    db: sqlite_utils.Database,
    mail: outbox.Pending,
    error: SendError,
    now: dt.datetime,
    report: DeliveryReport,
) -> None:
    attempt = mail.attempts + 1
    with transaction(db):
        if error.permanent or attempt > len(BACKOFF):
            outbox.mark(db, mail.id, "failed", now, error=str(error))
            report.failed += 1
            log.error("mail %s failed: %s", mail.key, error)
            return
        retry_at = now + dt.timedelta(seconds=BACKOFF[attempt - 1])
        outbox.mark(
            db, mail.id, "queued", now, error=str(error), next_attempt_at=outbox.iso(retry_at)
        )
        report.retry += 1
        log.warning("mail %s: %s; retrying at %s", mail.key, error, retry_at.isoformat())


def _flag_refused(db: sqlite_utils.Database, address: str, detail: str, key: str) -> None:
    db.execute(
        "insert or ignore into address_flags (address, kind, detail, created_at)"
        " values (?, 'refused', ?, ?)",
        [address.lower(), f"{detail} (mail {key})", now_utc()],
    )
