"""Waiting for new mail: IMAP IDLE on the shared mailbox, or polling when the server lacks it.

``Watcher.wait`` returns as soon as the server announces a new message, when the time
asked for has passed, or when the daemon is told to stop. The IDLE command is re-issued
every ``REISSUE`` seconds (servers drop idle clients after 30 minutes). A dropped
connection, a restarting server or imapclient's known "unterminated line" abort close
the connection; the next wait reconnects after a backoff (1 s doubling to 60 s) and
meanwhile returns "mail", so that the caller polls rather than misses a message.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from imapclient import IMAPClient

from .config import ImapConfig
from .errors import MailServerError
from .imap import IMAP_ERRORS, connect

log = logging.getLogger(__name__)

REISSUE = 25 * 60
CHECK = 1.0  # seconds between looks at the stop flag while idling
MAX_BACKOFF = 60.0


class Watcher:
    """Waits on one folder of the shared mailbox."""

    def __init__(
        self,
        cfg: ImapConfig,
        stop: threading.Event,
        poll: float = 60.0,
        stored_uid: Callable[[str], int] | None = None,
    ) -> None:
        """``stored_uid(folder)``: the last UID already stored, to see mail that came in
        while mailflow was busy (IDLE only announces what arrives during it)."""
        self.cfg = cfg
        self.stored_uid = stored_uid
        self.folder = cfg.folders[0]
        self.stop = stop
        self.poll = poll
        self.client: IMAPClient | None = None
        self.idle_supported = cfg.idle
        self.backoff = 0.0
        self.retry_at = 0.0

    def wait(self, timeout: float) -> str:
        """ "mail", "timeout", "stop" or "error" (after which the caller should poll)."""
        if not self.idle_supported:
            return self._sleep(min(timeout, self.poll), "timeout")
        if self.client is None:
            if time.monotonic() < self.retry_at:
                return self._sleep(min(timeout, self.retry_at - time.monotonic()), "mail")
            if not self._connect():
                return "error"
        try:
            return self._idle(timeout)
        except IMAP_ERRORS as e:
            log.warning("IMAP connection lost while waiting (%s): reconnecting", e)
            self._drop()
            self.retry_at = time.monotonic() + 1.0
            return "error"

    def _connect(self) -> bool:
        try:
            client = connect(self.cfg)
            client.select_folder(self.folder, readonly=True)
            if b"IDLE" not in client.capabilities():
                log.info("the IMAP server lacks IDLE: polling every %ss", self.poll)
                self.idle_supported = False
                client.logout()
                return True
        except (MailServerError, *IMAP_ERRORS) as e:
            self.backoff = min(max(self.backoff * 2, 1.0), MAX_BACKOFF)
            self.retry_at = time.monotonic() + self.backoff
            log.warning("cannot watch the mailbox (%s): retrying in %.0fs", e, self.backoff)
            return False
        self.client, self.backoff = client, 0.0
        return True

    def _idle(self, timeout: float) -> str:
        assert self.client is not None
        if self.stored_uid is not None:
            status = self.client.folder_status(self.folder, [b"UIDNEXT"])
            if int(status[b"UIDNEXT"]) - 1 > self.stored_uid(self.folder):
                return "mail"  # it arrived during the last tick, after its fetch
        deadline = time.monotonic() + min(timeout, REISSUE)
        self.client.idle()
        outcome = "timeout"
        while time.monotonic() < deadline:
            if self.stop.is_set():
                outcome = "stop"
                break
            wait = min(CHECK, max(deadline - time.monotonic(), 0.01))
            started = time.monotonic()
            responses = self.client.idle_check(timeout=wait)
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                outcome = "mail"
                break
            # imapclient hides end-of-file while idling: the socket is readable but no line
            # comes. An early empty return (or a BYE) means the server is gone.
            early = not responses and time.monotonic() - started < wait / 2
            if early or any(r and r[0] == b"BYE" for r in responses):
                raise ConnectionError("the server closed the connection")
        self.client.idle_done()
        return outcome

    def _sleep(self, seconds: float, outcome: str) -> str:
        return "stop" if self.stop.wait(max(seconds, 0)) else outcome

    def _drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(*IMAP_ERRORS):
                client.shutdown()

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(*IMAP_ERRORS):
                self.client.logout()
            self.client = None
