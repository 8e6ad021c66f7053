"""``mailflow run``: the engine's tick in a loop, woken by new mail, due steps and retries.

One daemon per database (an exclusive lock on ``<database>.lock``). After each tick it
waits until the next step is due, a mail is due for a retry, new mail arrives (IMAP IDLE)
or a heartbeat passes (``schedule`` drives the periodic jobs: the heartbeat tick and the
reload of changed workflow files). SIGTERM or SIGINT lets the current tick finish, then
exits cleanly; a second signal exits at once, which SQLite's atomic commits make safe.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

import schedule

from ..errors import MailflowError
from ..store import mailbox
from .clock import Clock, FileClock, SystemClock
from .engine import Engine
from .lock import Lock
from .watch import Watcher

log = logging.getLogger(__name__)

HEARTBEAT = 60.0


def notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as e:
            log.debug("sd_notify failed: %s", e)


class Daemon:
    """The loop around ``Engine.tick``."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock | None = None,
        *,
        heartbeat: float = HEARTBEAT,
        idle: bool = True,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.stop = threading.Event()
        self.heartbeat = heartbeat
        self.signals = 0
        self.watcher = (
            Watcher(engine.config.imap, self.stop, poll=heartbeat, stored=self._stored)
            if idle
            else None
        )
        self.jobs = schedule.Scheduler()
        self._wake = threading.Event()
        self._workflow_files = self._workflow_state()

    def _stored(self, folder: str) -> tuple[int, int]:
        """(UIDVALIDITY, last UID) of what is stored of ``folder``; (0, 0) before any sync."""
        return mailbox.folder_state(self.engine.db, folder) or (0, 0)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: finishing the current step, then exiting", signal.Signals(signum).name)
        self.stop.set()

    def run(self, *, once: bool = False) -> int:
        """Tick until stopped (or once); returns the process exit status."""
        lock = Lock.for_database(self.engine.config.database)
        lock.acquire()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        every = max(1, round(self.heartbeat))
        self.jobs.every(every).seconds.do(self._wake.set)
        self.jobs.every(every).seconds.do(self.reload_if_changed)
        notify("READY=1")
        rehearsal = " (rehearsal: the clock may be moved)" if self.engine.config.rehearsal else ""
        log.info("mailflow running on %s%s", self.engine.config.database, rehearsal)
        status = 0
        try:
            while not self.stop.is_set():
                ok = self.tick()
                if once:
                    status = 0 if ok else 1
                    break
                self.wait()
        finally:
            notify("STOPPING=1")
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.watcher is not None:
                self.watcher.close()
            lock.release()
            log.info("mailflow stopped")
        return status

    def tick(self) -> bool:
        """One tick; False when it failed or reported errors (``--once`` exits non-zero)."""
        now = self.clock.now()
        try:
            report = self.engine.tick(now)
        except MailflowError as e:
            log.error("tick at %s failed: %s", now.isoformat(), e)
            return False
        except Exception:  # a bug must not kill the daemon: logged, and the next tick runs
            log.exception("tick at %s failed", now.isoformat())
            return False
        for run in report.steps:
            log.info(
                "%s %s %s: %s (%d queued)",
                run.workflow,
                run.occurrence,
                run.step,
                run.status,
                run.queued,
            )
        for error in report.errors:
            log.error("%s", error)
        return not report.errors

    def seconds_to_next_due(self) -> float:
        """Real seconds until the engine has something to do, at most one heartbeat."""
        if isinstance(self.clock, FileClock):
            return min(self.heartbeat, 0.2)
        now = self.clock.now()
        upcoming = self.engine.next_due(now)
        budget = self.heartbeat if upcoming is None else (upcoming - now).total_seconds()
        idle = self.jobs.idle_seconds
        return max(0.0, min(budget, self.heartbeat, idle if idle is not None else self.heartbeat))

    def wait(self) -> None:
        deadline = time.monotonic() + self.seconds_to_next_due()
        while not self.stop.is_set():
            self.jobs.run_pending()
            if self._wake.is_set():
                self._wake.clear()
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.clock.changed():
                return
            if isinstance(self.clock, FileClock) or self.watcher is None:
                self.stop.wait(min(remaining, 0.1))
                continue
            outcome = self.watcher.wait(remaining)
            if outcome in ("mail", "error"):
                return

    def _workflow_state(self) -> dict[str, float]:
        folder = self.engine.config.workflows_dir
        return {p.name: p.stat().st_mtime for p in folder.glob("*.toml")} if folder.is_dir() else {}

    def reload_if_changed(self) -> None:
        """Pick up new or edited workflow files; a wrong one leaves the running set in place."""
        state = self._workflow_state()
        if state == self._workflow_files:
            return
        self._workflow_files = state
        try:
            self.engine.reload()
        except MailflowError as e:
            log.error("workflows not reloaded, the previous ones keep running: %s", e)
            return
        log.info("workflows reloaded: %s", ", ".join(w.name for w in self.engine.workflows))
