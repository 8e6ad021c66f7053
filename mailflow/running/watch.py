"""Waiting for new mail: IMAP IDLE on the shared mailbox, or polling when the server lacks it.

``Watcher.wait`` returns as soon as the server announces a new message, when the time
asked for has passed, or when the daemon is told to stop. The IDLE command is re-issued
every ``REISSUE`` seconds (servers drop idle clients after 30 minutes). A dropped
connection, a restarting server, a BYE, NO or BAD while idling, or imapclient's known
"unterminated line" abort close the connection; the next wait reconnects after a backoff
(1 s doubling to 60 s) and meanwhile returns "mail", so that the caller polls rather
than misses a message. A watched folder that is missing (deleted, not yet recreated) is
looked for again every ``MISSING_RETRY`` seconds on the open connection.

Before each IDLE the folder's STATUS is compared with the session and with what is
stored: a new UIDVALIDITY (the folder deleted and recreated, or renumbered) selects the
folder again and says "mail", so that the caller resyncs; mail stored up to a lower UID
than the folder's last is mail that came in during the caller's last pass.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from ..config import ImapConfig
from ..errors import MailServerError
from ..receiving.imap import IMAP_ERRORS, connect

log = logging.getLogger(__name__)

REISSUE = 25 * 60
CHECK = 1.0  # seconds between looks at the stop flag while idling
MAX_BACKOFF = 60.0
MISSING_RETRY = 0.5  # seconds between looks for a watched folder that does not exist

Stored = Callable[[str], tuple[int, int]]  # folder -> (UIDVALIDITY, last UID) stored


class Watcher:
    """Waits on one folder of the shared mailbox."""

    def __init__(
        self,
        cfg: ImapConfig,
        stop: threading.Event,
        poll: float = 60.0,
        stored: Stored | None = None,
    ) -> None:
        """``stored(folder)``: the UIDVALIDITY and last UID stored (0, 0 before any), to see
        mail that came in while mailflow was busy (IDLE only announces what arrives during it)."""
        self.cfg = cfg
        self.stored = stored
        self.folder = cfg.folders[0]
        self.stop = stop
        self.poll = poll
        self.client: IMAPClient | None = None
        self.selected = 0  # UIDVALIDITY of the folder as this session selected it; 0: missing
        self.idle_supported = cfg.idle
        self.backoff = 0.0
        self.retry_at = 0.0
        self.announced: tuple[int, ...] = ()  # (stored, folder's last UID) when it said "mail"
        self.missing_since = 0.0  # when the folder was found missing (0: it is there)

    def wait(self, timeout: float) -> str:
        """ "mail", "timeout", "stop" or "error" (after which the caller should poll)."""
        if not self.idle_supported:
            return self._sleep(min(timeout, self.poll), "timeout")
        if self.client is None:
            if time.monotonic() < self.retry_at:
                return self._sleep(min(timeout, self.retry_at - time.monotonic()), "mail")
            if not self._connect():
                return "error"
            if self.client is None:  # no IDLE on this server
                return self._sleep(min(timeout, self.poll), "timeout")
        try:
            if not self.selected:
                return self._find_folder(timeout)
            return self._idle(timeout)
        except IMAP_ERRORS as e:
            log.warning("IMAP connection lost while waiting (%s): reconnecting", e)
            self._drop()
            self.retry_at = time.monotonic() + 1.0
            return "error"

    def _connect(self) -> bool:
        try:
            client = connect(self.cfg)
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
        try:
            self.selected = self._select()
        except IMAP_ERRORS as e:  # gone again at once: as any lost connection
            log.warning("IMAP connection lost while selecting %s (%s)", self.folder, e)
            self._drop()
            self.retry_at = time.monotonic() + 1.0
            return False
        return True

    def _select(self) -> int:
        """Select the folder: its UIDVALIDITY, or 0 when it does not exist (the server says NO)."""
        assert self.client is not None
        try:
            info = self.client.select_folder(self.folder, readonly=True)
        except IMAPClientAbortError:
            raise  # the connection is gone
        except IMAPClientError as e:  # a NO: the session itself is fine
            if not self.missing_since:
                self.missing_since = time.monotonic()
                log.warning("the watched folder %s cannot be selected (%s): looking again "
                            "every %ss", self.folder, e, MISSING_RETRY)  # fmt: skip
            return 0
        if self.missing_since:
            log.info("the watched folder %s is back after %.1fs", self.folder,
                     time.monotonic() - self.missing_since)  # fmt: skip
            self.missing_since = 0.0
        return int(info[b"UIDVALIDITY"])

    def _find_folder(self, timeout: float) -> str:
        """Wait for the missing folder to exist again; "mail" once it does (it may hold some)."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            self.selected = self._select()
            if self.selected:
                return "mail"
            if time.monotonic() >= deadline:
                return "timeout"
            self.stop.wait(min(MISSING_RETRY, max(deadline - time.monotonic(), 0.01)))
        return "stop"

    def _changed(self) -> bool:
        """Whether the folder holds mail not stored yet, or is not the one selected any more."""
        assert self.client is not None
        status = self.client.folder_status(self.folder, [b"UIDNEXT", b"UIDVALIDITY"])
        validity, last = int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"]) - 1
        if validity != self.selected:
            # Deleted and recreated (or renumbered) under this session: an IDLE on what it
            # selected would never announce anything again.
            log.warning("%s: UIDVALIDITY %s -> %s under the watch: selecting it again",
                        self.folder, self.selected, validity)  # fmt: skip
            self.selected = self._select()
            return True
        if self.stored is None:
            return False
        stored = self.stored(self.folder)
        behind = stored[1] < last if stored[0] == validity else stored[0] != 0 or last > 0
        # Said once per state: if the caller's pass stored nothing (its fetch failed),
        # idling beats asking it again at once, in a loop, until more mail comes.
        state = (*stored, last)
        if behind and state != self.announced:
            self.announced = state
            return True
        return False

    def _idle(self, timeout: float) -> str:
        assert self.client is not None
        if self._changed():
            return "mail"  # it arrived during the last pass, or the folder was recreated
        deadline = time.monotonic() + min(timeout, REISSUE)
        self.client.idle()
        outcome = "timeout"
        while time.monotonic() < deadline:
            if self.stop.is_set():
                outcome = "stop"
                break
            if self._buffered():
                # Sent in the same packet as the IDLE continuation (mail that came in just
                # before): imaplib read it into its buffer, where polling the socket
                # cannot see it. Ending the IDLE reads it.
                return self._outcome(self.client.idle_done()[1]) or "timeout"
            wait = min(CHECK, max(deadline - time.monotonic(), 0.01))
            started = time.monotonic()
            responses = self.client.idle_check(timeout=wait)
            found = self._outcome(responses)
            if found:
                outcome = found
                break
            # imapclient hides end-of-file while idling: the socket is readable but no line
            # comes. An early empty return means the server is gone.
            if not responses and time.monotonic() - started < wait / 2:
                raise ConnectionError("the server closed the connection")
        self.client.idle_done()
        return outcome

    @staticmethod
    def _outcome(responses: list[tuple[object, ...]]) -> str | None:
        """ "mail" for a new message; raises for a BYE, NO or BAD (the watch is over)."""
        if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
            return "mail"
        ended = [r for r in responses if r and r[0] in (b"BYE", b"NO", b"BAD")]
        if ended:
            words = b" ".join(w for w in ended[0] if isinstance(w, bytes))
            raise ConnectionError(f"the server ended the watch: {words.decode(errors='replace')}")
        return None

    def _buffered(self) -> bool:
        """Whether imaplib holds server lines already read from the socket."""
        assert self.client is not None
        sock = self.client.socket()
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            return bool(self.client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(timeout)

    def _sleep(self, seconds: float, outcome: str) -> str:
        return "stop" if self.stop.wait(max(seconds, 0)) else outcome

    def _drop(self) -> None:
        client, self.client, self.selected = self.client, None, 0
        if client is not None:
            with contextlib.suppress(*IMAP_ERRORS):
                client.shutdown()

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(*IMAP_ERRORS):
                self.client.logout()
            self.client = None
