"""SMTP delivery of the outbox: one connection per batch, an outcome per recipient, no loops.

Each mail is claimed (marked ``sending`` and committed, only if nobody claimed it since
it was read) before the SMTP transaction, and what the server said is recorded right
after. The envelope holds the mail's addresses that are neither settled (accepted, or
failed for good, in an earlier attempt) nor suppressed (``store.outgoing``): a suppressed
address is left out and recorded as such, and the other recipients still get the mail.
This is done here, at delivery, so it covers every mail whatever built it.

Per recipient: an accepted address is settled; a 5xx at RCPT fails that address and
suppresses it; a 4xx at RCPT (greylisting, "452 too many recipients") is retried for that
address alone, with the same bytes and Message-ID, after 1 min, 5 min, 15 min, 1 h, 3 h,
6 h, then fails. A 4xx for the whole message (at DATA, a dropped connection) retries the
mail on the same backoff; a 5xx fails it at once. A row is ``sent`` once every address
is settled and one of them had it, ``failed`` when none did.

mailflow chooses at-least-once for the mail in flight, in two windows; the copy carries
the same Message-ID, which lets mail clients that deduplicate (Gmail does) drop it:

- a crash between the server's acceptance and the record of it;
- the database locked beyond its busy timeout, ``RECORD_TRIES`` times, while the
  outcome is recorded: one error line is logged and the row stays ``sending``.

Either way the row goes again, to the same envelope, once its ten-minute lease
(``outgoing.SENDING_LEASE``) has run out.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import oauth
from ..config import SmtpConfig, tls_context
from ..errors import MailServerError, SendError
from ..servers import explain
from ..store import desk, outgoing
from ..store.db import Database, iso, transaction
from ..store.outgoing import Pending
from ..store.states import SETTLED, Delivery, Failure, Flag, Sending, Suppressed

log = logging.getLogger(__name__)

BACKOFF = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
# Recording an outcome while another process holds the write lock: how many times, and
# the pause between them, each on top of the connection's busy timeout.
RECORD_TRIES = 3
RECORD_PAUSE = 0.5
# RFC 5321 4.5.3.1.10: old servers answer "too many recipients" at RCPT with 552, which
# clients are to take as 452: a temporary refusal of that address.
_TOO_MANY_RECIPIENTS = 552
_CONNECTION_ERRORS = (OSError, socket.timeout, ssl.SSLError, smtplib.SMTPServerDisconnected)


@dataclass
class DeliveryReport:
    """What one delivery did, counted by the status each row ended in."""

    sent: int = 0
    retry: int = 0
    failed: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retry += other.retry
        self.failed += other.failed
        self.refused.update(other.refused)


def connect(cfg: SmtpConfig) -> smtplib.SMTP:
    """A connected (and logged-in, when configured) SMTP client.

    With ``auth = "oauth2"``, the login is XOAUTH2 or OAUTHBEARER with an access token; a
    cached token the server refuses is replaced once by a fresh one.
    """
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
        if cfg.oauth2 is not None:
            _oauth2_login(client, cfg, where)
        elif cfg.username:
            client.login(cfg.username, password or "")
    except MailServerError:
        _close(client)
        raise
    except smtplib.SMTPAuthenticationError as e:
        _close(client)
        raise MailServerError(
            f"{where}: login refused for {cfg.username} ({e.smtp_code}): check the password "
            f"in ${cfg.password_env}"
        ) from e
    except (*_CONNECTION_ERRORS, smtplib.SMTPException) as e:
        _close(client)
        raise MailServerError(f"{where}: {explain('SMTP', e, cfg.security, 'smtp')}") from e
    return client


def _oauth2_login(client: smtplib.SMTP, cfg: SmtpConfig, where: str) -> None:
    """Log in with a token; a refused one is replaced once (it may have been revoked)."""
    assert cfg.oauth2 is not None
    offered = {m.upper() for m in client.esmtp_features.get("auth", "").split()}
    mechanism = oauth.choose_mechanism(offered, where, "smtp")
    token = oauth.access_token(cfg.oauth2)
    try:
        oauth_login(client, mechanism, cfg, token)
        return
    except smtplib.SMTPAuthenticationError as e:
        error = e
    fresh = oauth.renew(cfg.oauth2, token)
    if fresh is not None:
        try:
            oauth_login(client, mechanism, cfg, fresh)
            return
        except smtplib.SMTPAuthenticationError as e:
            error = e
    said = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else ""
    raise oauth.TokenError(
        f"{where}: the server refused the OAuth2 token ({mechanism}) from "
        f"{cfg.oauth2.describe()} for {cfg.username} ({error.smtp_code} {said}): "
        f"{oauth.refusal_hint(cfg.oauth2, 'SMTP')}"
    )


def oauth_login(client: smtplib.SMTP, mechanism: str, cfg: SmtpConfig, token: str) -> None:
    """One AUTH XOAUTH2 or OAUTHBEARER; ``SMTPAuthenticationError`` when it is refused."""
    first = oauth.sasl_response(mechanism, cfg.username, token, cfg.host, cfg.port)

    def answer(challenge: bytes | None = None) -> str:
        # After a refusal the server sends its error as a challenge: an empty answer ends it.
        return first if challenge is None else ""

    client.auth(mechanism, answer)


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
    db: Database, cfg: SmtpConfig, now: dt.datetime, *, limit: int = 1000
) -> DeliveryReport:
    """Send what is due; a server that cannot be reached leaves everything queued."""
    report = DeliveryReport()
    pending = outgoing.due(db, now, limit)
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
                break  # connection gone or database locked: the rest waits for the next delivery
    finally:
        try:
            client.quit()
        except (*_CONNECTION_ERRORS, smtplib.SMTPException):
            client.close()
    return report


Recorder = Callable[[DeliveryReport], None]


def _send_one(
    db: Database,
    client: smtplib.SMTP,
    mail: Pending,
    now: dt.datetime,
    report: DeliveryReport,
) -> bool:
    """Send one mail and record the outcome; False when the batch must stop."""
    try:
        envelope = _claim(db, mail, now)
    except sqlite3.OperationalError as e:
        log.error("mail %s stays queued: the database is locked (%s)", mail.key, e)
        return False
    if envelope is None:
        return True  # another process took it meanwhile
    if not envelope:  # every address is settled or suppressed: nothing to send
        return _commit(db, mail, report, lambda r: _settle(db, mail, now, r))
    try:
        refused = client.sendmail(mail.sender, envelope, mail.raw)
    except smtplib.SMTPRecipientsRefused as e:
        refused = e.recipients  # every address was refused, each with its own answer
    except (*_CONNECTION_ERRORS, smtplib.SMTPException) as e:
        error = _classify(e)
        recorded = _commit(db, mail, report, lambda r: _fail(db, mail, envelope, error, now, r))
        return recorded and not _connection_lost(e)
    except Exception as e:  # e.g. an address smtplib cannot encode: that mail fails alone
        error = SendError(f"{type(e).__name__}: {e}", permanent=True)
        return _commit(db, mail, report, lambda r: _fail(db, mail, envelope, error, now, r))
    answers = {a: (code, text.decode(errors="replace")) for a, (code, text) in refused.items()}
    return _commit(db, mail, report, lambda r: _outcome(db, mail, envelope, answers, now, r))


def _claim(db: Database, mail: Pending, now: dt.datetime) -> list[str] | None:
    """Claim the mail and return its envelope; None when another process claimed it."""
    with transaction(db):
        if not outgoing.claim(db, mail, now):
            return None
        states = outgoing.delivery_states(db, mail.id)
        todo = {a.lower(): a for a in mail.to if states.get(a.lower()) not in SETTLED}
        blocked = outgoing.among(db, todo)
        for address in blocked:
            outgoing.record(db, mail.id, address, Delivery.SUPPRESSED, now,
                            attempt=mail.attempts + 1)  # fmt: skip
        return [a for key, a in todo.items() if key not in blocked]


def _commit(db: Database, mail: Pending, report: DeliveryReport, record: Recorder) -> bool:
    """Record an outcome in one transaction, tried again while the database is locked.

    False when it never went through: the row stays ``sending`` and goes again, to the
    same envelope and with the same Message-ID, once its lease has run out.
    """
    for attempt in range(1, RECORD_TRIES + 1):
        outcome = DeliveryReport()
        try:
            with transaction(db):
                record(outcome)
        except sqlite3.OperationalError as e:
            if attempt < RECORD_TRIES:
                time.sleep(RECORD_PAUSE)
                continue
            minutes = int(outgoing.SENDING_LEASE.total_seconds() // 60)
            log.error(
                "mail %s: its delivery could not be recorded, the database stayed locked (%s);"
                " it goes again in %d minutes, with the same Message-ID", mail.key, e, minutes,
            )  # fmt: skip
            return False
        report.add(outcome)
        return True
    return False


def _outcome(
    db: Database,
    mail: Pending,
    envelope: list[str],
    refused: dict[str, tuple[int, str]],
    now: dt.datetime,
    report: DeliveryReport,
) -> None:
    """Record the server's answer for each address of the envelope, then settle the row."""
    attempt = mail.attempts + 1
    for address in envelope:
        if address not in refused:
            outgoing.record(db, mail.id, address, Delivery.SENT, now, attempt=attempt)
            continue
        code, text = refused[address]
        if 500 <= code < 600 and code != _TOO_MANY_RECIPIENTS:
            outgoing.record(db, mail.id, address, Delivery.FAILED, now, failure=Failure.REJECTED,
                            attempt=attempt, code=code, detail=text)  # fmt: skip
            outgoing.suppress(
                db, address, Suppressed.REFUSED, now, code=str(code), detail=text, outbox=mail.id
            )
            _flag_refused(db, address, f"{code} {text}")
            report.refused[address] = str(code)
            log.warning("mail %s: %s refused (%d %s); no more mail to it", mail.key, address,
                        code, text)  # fmt: skip
        elif attempt > len(BACKOFF):
            outgoing.record(db, mail.id, address, Delivery.FAILED, now,
                            failure=Failure.EXHAUSTED, attempt=attempt, code=code,
                            detail=text)  # fmt: skip
            log.error("mail %s: %s still refused (%d %s); no more retries", mail.key, address,
                      code, text)  # fmt: skip
        else:
            outgoing.record(db, mail.id, address, Delivery.RETRY, now, attempt=attempt,
                            code=code, detail=text)  # fmt: skip
            log.warning("mail %s: %s refused for now (%d %s); retried for it alone",
                        mail.key, address, code, text)  # fmt: skip
    _settle(db, mail, now, report)


def _settle(db: Database, mail: Pending, now: dt.datetime, report: DeliveryReport) -> None:
    """Set the row's status from its addresses: queued while one waits for a retry."""
    states = outgoing.delivery_states(db, mail.id)
    outcomes = set(states.values())
    if Delivery.RETRY in outcomes:
        attempt = mail.attempts + 1
        retry_at = now + dt.timedelta(seconds=BACKOFF[attempt - 1])
        waiting = ", ".join(sorted(a for a, s in states.items() if s == Delivery.RETRY))
        outgoing.mark(db, mail.id, Sending.QUEUED, now, error=f"to retry for {waiting}",
                      next_attempt_at=iso(retry_at))  # fmt: skip
        report.retry += 1
    elif Delivery.SENT in outcomes:
        outgoing.mark(db, mail.id, Sending.SENT, now, error=None)
        report.sent += 1
    else:
        nobody = outcomes <= {Delivery.SUPPRESSED}
        failure = Failure.NO_RECIPIENT if nobody else Failure.RECIPIENTS
        error = "not sent: every address is suppressed" if nobody else "every address failed"
        outgoing.mark(db, mail.id, Sending.FAILED, now, failure=failure, error=error)
        report.failed += 1
        log.error("mail %s %s", mail.key, error)


def _fail(
    db: Database,
    mail: Pending,
    envelope: list[str],
    error: SendError,
    now: dt.datetime,
    report: DeliveryReport,
) -> None:
    """Record a failure of the whole message: retried later, or failed for good."""
    attempt = mail.attempts + 1
    if not error.permanent and attempt <= len(BACKOFF):
        retry_at = now + dt.timedelta(seconds=BACKOFF[attempt - 1])
        outgoing.mark(
            db, mail.id, Sending.QUEUED, now, error=str(error), next_attempt_at=iso(retry_at)
        )
        report.retry += 1
        log.warning("mail %s: %s; retrying at %s", mail.key, error, retry_at.isoformat())
        return
    report.failed += 1
    log.error("mail %s failed: %s", mail.key, error)
    failure = Failure.REFUSED if error.permanent else Failure.EXHAUSTED
    if Delivery.SENT not in outgoing.delivery_states(db, mail.id).values():
        outgoing.mark(db, mail.id, Sending.FAILED, now, error=str(error), failure=failure)
        return
    # Others had it in an earlier attempt: the row is sent, these addresses failed.
    for address in envelope:
        outgoing.record(db, mail.id, address, Delivery.FAILED, now, failure=Failure.MESSAGE,
                        attempt=attempt, code=error.code, detail=str(error))  # fmt: skip
    outgoing.mark(db, mail.id, Sending.SENT, now, error=str(error))


def _flag_refused(db: Database, address: str, detail: str) -> None:
    desk.add_flag(db, address.lower(), Flag.REFUSED, detail, dt.datetime.now(dt.UTC))
