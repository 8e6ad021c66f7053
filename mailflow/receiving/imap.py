"""Connecting to the shared mailbox, with every failure turned into a ``MailServerError``.

The login is the configured one: a password, or with ``auth = "oauth2"`` an access token
(OAUTHBEARER when the server offers it, else XOAUTH2); a cached token the server refuses
is replaced once by a fresh one before the refusal is reported.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from .. import oauth
from ..config import ImapConfig, tls_context
from ..errors import MailServerError
from ..servers import explain

# Everything a dropped connection, a restarting server or a refused login can raise.
IMAP_ERRORS = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.error, IMAPClientError)


def connect(cfg: ImapConfig) -> IMAPClient:
    """A logged-in client; raises ``MailServerError`` saying what failed and where."""
    where = f"IMAP {cfg.host}:{cfg.port}"
    password = cfg.require_password()
    context = tls_context(cfg.ca_file)
    try:
        client = IMAPClient(
            cfg.host,
            port=cfg.port,
            ssl=cfg.security == "tls",
            ssl_context=context if cfg.security != "none" else None,
            timeout=cfg.timeout,
        )
    except IMAP_ERRORS as e:
        raise MailServerError(f"{where}: {explain('IMAP', e, cfg.security, 'imap')}") from e
    # imapclient sets imaplib's debug level to 5 to log through ``logging``: imaplib then
    # builds the repr() of every literal it reads, whatever the log level, which is over
    # twice a large message's size in memory. mailflow never logs protocol traffic.
    client._imap.debug = 0
    try:
        if cfg.security == "starttls":
            client.starttls(context)
        if cfg.oauth2 is not None:
            _oauth2_login(client, cfg, where)
        else:
            client.login(cfg.username, password)
    except LoginError as e:
        _close(client)
        raise MailServerError(
            f"{where}: login refused for {cfg.username} ({e}): check the password in "
            f"${cfg.password_env}"
        ) from e
    except MailServerError:
        _close(client)
        raise
    except IMAP_ERRORS as e:
        _close(client)
        raise MailServerError(f"{where}: {explain('IMAP', e, cfg.security, 'imap')}") from e
    return client


def _oauth2_login(client: IMAPClient, cfg: ImapConfig, where: str) -> None:
    """Log in with a token; a refused one is replaced once (it may have been revoked)."""
    assert cfg.oauth2 is not None
    offered = {
        c.decode().split("=", 1)[1].upper()
        for c in client.capabilities()
        if c.upper().startswith(b"AUTH=")
    }
    mechanism = oauth.choose_mechanism(offered, where, "imap")
    token = oauth.access_token(cfg.oauth2)
    try:
        oauth_login(client, mechanism, cfg.username, token)
        return
    except LoginError as e:
        error = e
    fresh = oauth.renew(cfg.oauth2, token)
    if fresh is not None:
        try:
            oauth_login(client, mechanism, cfg.username, fresh)
            return
        except LoginError as e:
            error = e
    raise oauth.TokenError(
        f"{where}: the server refused the OAuth2 token ({mechanism}) from "
        f"{cfg.oauth2.describe()} for {cfg.username} ({error}): "
        f"{oauth.refusal_hint(cfg.oauth2, 'IMAP')}"
    )


def oauth_login(client: IMAPClient, mechanism: str, user: str, token: str) -> None:
    """One AUTHENTICATE XOAUTH2 or OAUTHBEARER; ``LoginError`` when the token is refused."""
    if mechanism == "XOAUTH2":
        client.oauth2_login(user, token)
    else:
        client.oauthbearer_login(user, token)


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except IMAP_ERRORS:
        with suppress(*IMAP_ERRORS):
            client.shutdown()


@contextmanager
def session(cfg: ImapConfig) -> Iterator[IMAPClient]:
    """A logged-in client for the duration of a block; IMAP errors become ``MailServerError``."""
    client = connect(cfg)
    try:
        yield client
    except IMAP_ERRORS as e:
        raise MailServerError(f"IMAP {cfg.host}:{cfg.port}: {type(e).__name__}: {e}") from e
    finally:
        _close(client)
