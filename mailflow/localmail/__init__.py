"""Real mail servers on loopback: Dovecot for IMAP and LMTP, aiosmtpd for SMTP.

Used by the test suite, ``mailflow demo`` and the benchmarks. Everything lives under one
folder; nothing touches the system's own mail setup. A test reads what mailflow sent from
the recipient's mailbox over IMAP, exactly as the recipient's client would. ``secure``
adds what organisations' servers have: a private CA (``certificates``), IMAP over TLS and
STARTTLS, and OAuth2 logins checked against a loopback identity provider (``identity``).
"""

from __future__ import annotations

import shutil
import smtplib
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from imapclient import IMAPClient

from ..errors import LocalMailError
from .dovecot import Dovecot, free_port, wait_for_port
from .identity import IdentityProvider
from .smtpd import SmtpServer
from .tls import Certificates, make_certificates

__all__ = [
    "PASSWORD",
    "Certificates",
    "Dovecot",
    "IdentityProvider",
    "LocalMail",
    "SmtpServer",
    "free_port",
    "wait_for_port",
]

PASSWORD = "secret"


class LocalMail:
    """Dovecot and an SMTP server that delivers into it, started and stopped together."""

    def __init__(
        self, base: Path | None = None, mail_format: str = "maildir", *, secure: bool = False
    ) -> None:
        self._own_base = base is None
        self.base = Path(base or tempfile.mkdtemp(prefix="mailflow-localmail-"))
        if self._own_base:
            self.base.chmod(0o755)  # Dovecot's own users must reach their mail under it.
        self.certificates: Certificates | None = None
        self.identity: IdentityProvider | None = None
        if secure:
            self.certificates = make_certificates(self.base / "tls")
            self.identity = IdentityProvider(self.certificates).start()
        self.dovecot = Dovecot(
            self.base / "dovecot", mail_format=mail_format, tls=self.certificates,
            introspection_url=self.identity.introspection_url if self.identity else None,
        )  # fmt: skip
        self.smtp = SmtpServer(self.dovecot.lmtp_port, self.is_user)

    @property
    def imap_port(self) -> int:
        return self.dovecot.imap_port

    @property
    def smtp_port(self) -> int:
        return self.smtp.port

    def start(self) -> LocalMail:
        self.dovecot.start()
        try:
            self.smtp.start()
        except BaseException:
            self.cleanup()  # a Dovecot left running would outlive the failed caller
            raise
        return self

    def stop(self) -> None:
        self.smtp.stop()
        self.dovecot.stop()

    def cleanup(self) -> None:
        self.stop()
        if self.identity is not None:
            self.identity.stop()
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalMail:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def config_text(
        self, *, shared: str, alias: str, cohort: str, mailflow: str = "", extra: str = ""
    ) -> str:
        """A ``mailflow.toml`` for these servers: ``shared`` is the mailbox mailflow reads.

        ``mailflow`` holds more lines of the [mailflow] table, ``extra`` more tables.
        The IMAP password is ``PASSWORD``, to put in ``$MAILFLOW_IMAP_PASSWORD``. These
        servers stand in for real ones in tests, the demo and benchmarks, whose clock is
        moved: the config is a rehearsal.
        """
        return (
            f"[mailflow]\nrehearsal = true\n{mailflow}\n"
            f'[imap]\nhost = "127.0.0.1"\nport = {self.imap_port}\nsecurity = "none"\n'
            f'username = "{shared}"\n\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {self.smtp_port}\nsecurity = "none"\n\n'
            f'[addresses]\nfrom = "{shared}"\nfrom_name = "Programme EIG"\n'
            f'alias = "{alias}"\ncohort = "{cohort}"\n\n{extra}'
        )

    def add_user(self, address: str, password: str = PASSWORD) -> str:
        self.dovecot.add_user(address.lower(), password)
        return address

    def is_user(self, address: str) -> bool:
        local, _, domain = address.lower().partition("@")
        return self.dovecot.has_user(f"{local.split('+', 1)[0]}@{domain}")

    def imap(self, address: str, password: str = PASSWORD) -> IMAPClient:
        """A logged-in IMAP client for ``address`` (the caller logs out)."""
        client = IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=30)
        client.login(address, password)
        return client

    def deliver(self, raw: bytes, to: Iterable[str], sender: str = "") -> None:
        """Hand a message to Dovecot over LMTP, as the receiving MTA would."""
        with smtplib.LMTP("127.0.0.1", self.dovecot.lmtp_port) as lmtp:
            for rcpt in to:  # one transaction each: LMTP answers DATA once per recipient
                lmtp.sendmail(sender or "<>", [rcpt], raw)

    def send(self, raw: bytes, to: Iterable[str], sender: str) -> None:
        """Submit a message to the SMTP server, as a mail client would."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port) as smtp:
            smtp.sendmail(sender, list(to), raw)

    def append(self, address: str, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        """Append messages to a folder, 500 per MULTIAPPEND."""
        client = self.imap(address)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            batch: list[bytes] = []
            for raw in messages:
                batch.append(raw)
                if len(batch) == 500:
                    client.multiappend(folder, batch)
                    batch = []
            if batch:
                client.multiappend(folder, batch)
        finally:
            client.logout()

    def fetch(self, address: str, folder: str = "INBOX") -> list[bytes]:
        """Every message of a folder, in UID order, without marking them read."""
        client = self.imap(address)
        try:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[uid][b"BODY[]"] for uid in sorted(data)]
        finally:
            client.logout()

    def wait_for(
        self, address: str, count: int, folder: str = "INBOX", timeout: float = 10.0
    ) -> list[bytes]:
        """The folder's messages once there are at least ``count`` (SMTP delivery is async)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.fetch(address, folder)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise LocalMailError(
                    f"{address}/{folder}: {len(messages)} messages after {timeout}s, "
                    f"expected {count}"
                )
            time.sleep(0.05)
