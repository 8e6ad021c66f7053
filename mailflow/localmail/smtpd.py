"""An aiosmtpd server on loopback that delivers what it accepts into Dovecot over LMTP.

It behaves like a small real relay: unknown recipients are refused at RCPT with 550,
accepted mail lands in the recipients' mailboxes where a test reads it as they would,
and failures can be scripted (``fail_next``) to test retries and permanent errors. It can
require a login: a password, or an OAuth2 token (XOAUTH2, OAUTHBEARER) that it checks
against an introspection endpoint (RFC 7662), as Dovecot's ``oauth2`` passdb does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import smtplib
import ssl
import threading
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import LocalMailError
from .dovecot import free_port

HeaderHook = Callable[[str, list[str], bytes], bytes]
TokenCheck = Callable[[str, str], bool]  # (user, token): may this token log in as user?
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


@dataclass
class Delivery:
    """What the server accepted: envelope and bytes as received."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class _Script:
    """Scripted behaviour: answers consumed one per DATA, refused recipients, stalls."""

    data: deque[str] = field(default_factory=deque)
    refused: dict[str, str] = field(default_factory=dict)
    ehlo_stall: float = 0.0
    data_stall: float = 0.0
    data_stall_skip: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)


class DeliveringHandler:
    """aiosmtpd handler: check recipients, then hand the message to Dovecot's LMTP."""

    def __init__(self, lmtp_port: int, known: Callable[[str], bool]) -> None:
        self.lmtp_port = lmtp_port
        self.known = known
        self.script = _Script()
        self.deliveries: list[Delivery] = []
        self.header_hook: HeaderHook | None = None
        self.token_check: TokenCheck | None = None
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) of each accepted token
        self.lock = threading.Lock()

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        return await self._oauth2(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> Any:
        return await self._oauth2(server, args, "OAUTHBEARER")

    async def _oauth2(self, server: Any, args: list[str], mechanism: str) -> Any:
        """Check the bearer token; a refusal is a JSON challenge then 535, as Gmail does."""
        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Bad base64")
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        user, token = _bearer(blob.decode("utf-8", "replace"))
        check = self.token_check
        loop = asyncio.get_running_loop()
        if check is not None and await loop.run_in_executor(None, check, user, token):
            with self.lock:
                self.logins.append((mechanism, user))
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)  # the client answers it with an empty line
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and token not accepted"
        )

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.script.ehlo_stall:
            self.script.stalled.set()
            await asyncio.sleep(self.script.ehlo_stall)
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refused = self.script.refused.get(address.lower())
        if refused:
            return refused
        if not self.known(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            scripted = self.script.data.popleft() if self.script.data else None
        if scripted:
            return scripted
        data = envelope.original_content or envelope.content
        if self.header_hook is not None:
            data = self.header_hook(envelope.mail_from, list(envelope.rcpt_tos), data)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, self._lmtp, envelope.mail_from, envelope.rcpt_tos, data
            )
        except (OSError, smtplib.SMTPException) as e:
            return f"451 4.3.0 local delivery failed: {e}"
        with self.lock:
            self.deliveries.append(Delivery(envelope.mail_from, list(envelope.rcpt_tos), data))
            stall = self.script.data_stall and self.script.data_stall_skip <= 0
            self.script.data_stall_skip -= 1
        if stall:
            # Delivered, but the client waits for the answer: the window where a crash
            # leaves the sender unsure whether the mail went.
            self.script.stalled.set()
            await asyncio.sleep(self.script.data_stall)
        return "250 2.0.0 Message accepted for delivery"

    def _lmtp(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        # One LMTP transaction per recipient: LMTP answers DATA once per recipient, which
        # smtplib reads as a single answer.
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            for rcpt in rcpt_tos:
                lmtp.sendmail(mail_from or "<>", [rcpt], data)


class SmtpServer:
    """The loopback SMTP server; ``start``/``stop`` can be called repeatedly (outage tests)."""

    def __init__(
        self,
        lmtp_port: int,
        known: Callable[[str], bool],
        port: int | None = None,
        auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        introspection_url: str | None = None,
        oauth_mechanisms: tuple[str, ...] = OAUTH_MECHANISMS,
    ) -> None:
        """``auth``: the one login accepted. ``tls``: offer STARTTLS (and require it before
        AUTH), or with ``implicit_tls`` speak TLS from the first byte, as on port 465.
        ``introspection_url``: accept OAuth2 tokens that endpoint says are active for the
        user, with ``oauth_mechanisms`` (Microsoft 365 offers XOAUTH2 alone)."""
        self.port = port or free_port()
        self.handler = DeliveringHandler(lmtp_port, known)
        self.auth = auth
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.introspection_url = introspection_url
        self.oauth_mechanisms = oauth_mechanisms if introspection_url else ()
        if introspection_url is not None:
            self.handler.token_check = self._introspect
        self._controller: Any = None

    def start(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise LocalMailError(
                "aiosmtpd, the SMTP server of the demo and the tests, is not installed:"
                " pip install aiosmtpd (in a checkout, `bash .ci/setup` installs it)"
            ) from None
        kwargs: dict[str, Any] = {
            "auth_exclude_mechanism": [
                *(m for m in OAUTH_MECHANISMS if m not in self.oauth_mechanisms),
                *(("LOGIN", "PLAIN") if self.auth is None else ()),
            ]
        }
        if self.auth is not None or self.oauth_mechanisms:
            # aiosmtpd only knows STARTTLS sessions as TLS: with implicit TLS, all of it is.
            require = self.tls is not None and not self.implicit_tls
            kwargs.update(authenticator=self._authenticate, auth_require_tls=require)
        if self.tls is not None and self.implicit_tls:
            kwargs["ssl_context"] = self.tls
        elif self.tls is not None:
            kwargs.update(tls_context=self.tls, require_starttls=True)
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localmail.test",
            data_size_limit=64 * 1024 * 1024,
            **kwargs,
        )
        self._controller.start()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(auth_data, LoginPassword)
            and self.auth is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.auth
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    def _introspect(self, user: str, token: str) -> bool:
        assert self.introspection_url is not None
        body = urllib.parse.urlencode({"token": token}).encode()
        try:
            with urllib.request.urlopen(self.introspection_url, body, timeout=10) as answer:
                data = json.loads(answer.read())
        except (OSError, ValueError):
            return False
        return data.get("active") is True and str(data.get("username", "")) == user.lower()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next(self, response: str, times: int = 1) -> None:
        """Answer the next ``times`` DATA commands with ``response`` (e.g. ``451 4.3.2 busy``)."""
        with self.handler.lock:
            self.handler.script.data.extend([response] * times)

    def refuse(self, address: str, response: str = "550 5.1.1 User unknown") -> None:
        """Refuse ``address`` at RCPT with ``response`` until ``clear_failures``."""
        self.handler.script.refused[address.lower()] = response

    def stall(self, seconds: float, *, at: str = "data", skip: int = 0) -> threading.Event:
        """Hold the session ``seconds`` at EHLO, or after delivering the ``skip``+1-th DATA.

        Returns an event set when the stall begins.
        """
        with self.handler.lock:
            self.handler.script.stalled = threading.Event()
            if at == "ehlo":
                self.handler.script.ehlo_stall = seconds
            else:
                self.handler.script.data_stall = seconds
                self.handler.script.data_stall_skip = skip
            return self.handler.script.stalled

    def clear_failures(self) -> None:
        with self.handler.lock:
            self.handler.script = _Script()

    @property
    def deliveries(self) -> list[Delivery]:
        with self.handler.lock:
            return list(self.handler.deliveries)


def _bearer(message: str) -> tuple[str, str]:
    """(user, token) of an XOAUTH2 or OAUTHBEARER first message; "" for what is missing."""
    user = token = ""
    for part in message.split("\x01"):
        if part.startswith("user="):
            user = part[5:]
        elif part.startswith("auth=Bearer "):
            token = part[12:]
        elif part.startswith("n,"):  # OAUTHBEARER's GS2 header: n,a=user,
            authzid = part.split(",")[1]
            if authzid.startswith("a="):
                user = authzid[2:].replace("=2C", ",").replace("=3D", "=")
    return user, token
