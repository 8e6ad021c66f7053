"""The engine: ``tick(now)`` does everything due at ``now``, and doing it twice does nothing more.

A tick reloads the roster if its file changed, ingests the mailbox, decides what each
new message is, runs every workflow step that is due and has not run (within its grace
window, or as its ``when_late`` says), delivers the outbox, and tells the staff about
mail that could not be delivered. What ran is recorded per (workflow, occurrence, step),
so a replayed tick, a restart or a crash at any point neither skips nor repeats a step.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import ClockError, ConfigError, MailflowError, MailServerError
from ..programme import calendars
from ..programme.events import (
    Event,
    get_event,
    is_url,
    load_ics,
    load_planning,
    sync_events,
    upcoming,
)  # fmt: skip
from ..programme.occurrences import due_at, occurrence_day, occurrences_around
from ..programme.roster import Roster, load_roster, sync_roster
from ..programme.steps import Occurrence, StepRun, change_mails, failed_notice, give_up, run_step
from ..programme.workflow import Step, Workflow, load_workflows, merged_spec
from ..sending import notices, tokens
from ..sending.compose import Mailer
from ..sending.render import KeptCode, Renderer
from ..store import outgoing, schedule
from ..store.db import Database, iso, open_db, transaction
from ..store.events import mark_notified, unnotified_changes
from ..store.outgoing import Outgoing, Pending
from ..store.states import Change, EventStatus

if TYPE_CHECKING:
    # Reading the mailbox, judging mail and delivering it import heavy parts (imapclient,
    # the parser, dkimpy, smtplib): only the commands that do those import them.
    from ..programme.receipts import Answer, PresenceNote
    from ..receiving.alias import Desk
    from ..receiving.answers import InboundReport
    from ..receiving.ingest import IngestReport
    from ..sending.send import DeliveryReport

log = logging.getLogger(__name__)

LOOKBACK = dt.timedelta(days=14)
CALENDAR_REFRESH = dt.timedelta(minutes=15)


FUTURE_TOLERANCE = dt.timedelta(minutes=1)
BLIND_NOTICE_AFTER = dt.timedelta(hours=1)  # an unreadable mailbox the staff are told about


@dataclass
class TickReport:
    now: dt.datetime
    blind: str = ""  # why the mailbox could not be read this tick ("" when it was)
    ingest: IngestReport | None = None
    inbound: InboundReport | None = None
    steps: list[StepRun] = field(default_factory=list)
    delivery: DeliveryReport | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class DryRun:
    """What a tick would do: its report, and each mail it would send with its subject."""

    report: TickReport
    mails: list[tuple[Pending, str]]


class Engine:
    """A configured mailflow: its database, workflows, templates and roster."""

    def __init__(
        self, config: Config, db: Database | None = None, *, preflight: bool = True
    ) -> None:
        """``preflight`` false skips rendering every template first (read-only commands)."""
        self.config = config
        self.db = db if db is not None else open_db(config.database)
        calendars.recall(self.db)
        self.workflows = load_workflows(config.workflows_dir)
        self.prepare_calendars(dt.date.today().year)
        self.spec = merged_spec(self.workflows)
        self.secret = tokens.secret_for(self.db, config.security.secret)
        self.mailer = Mailer(config, self._renderer(), self.secret)
        self._roster_mtime: float | None = None
        self._event_stamps: dict[str, object] = {}
        if preflight:
            self.check_templates()
        self.sync_roster()

    def reload(self) -> None:
        """Load the workflow files and templates again; all valid, or nothing changes."""
        workflows = load_workflows(self.config.workflows_dir)
        mailer = Mailer(self.config, self._renderer(), self.secret)
        previous = (self.workflows, self.mailer)
        self.workflows, self.mailer = workflows, mailer
        try:
            self.check_templates()
        except MailflowError:
            self.workflows, self.mailer = previous
            raise
        if "desk" in self.__dict__:
            self.desk.mailer = mailer
        self.spec = merged_spec(workflows)
        self.prepare_calendars(dt.date.today().year)

    def prepare_calendars(self, year: int) -> None:
        """Public holidays of the workflows' regions around ``year`` at hand and kept."""
        regions = [(w.schedule.holidays, w.schedule.subdivision) for w in self.workflows]
        calendars.prepare(self.db, [r for r in regions if r[0]], (year - 1, year, year + 1))

    @cached_property
    def desk(self) -> Desk:
        """The staff alias's desk: commands by mail and help requests."""
        from ..receiving.alias import Desk
        from ..receiving.commands import Vocabulary

        vocabulary = Vocabulary.load(self.config.templates_dir / "commands.toml")
        return Desk(self.mailer, lambda: self.workflows, vocabulary)

    def _renderer(self) -> Renderer:
        return Renderer(self.config.templates_dir, self.config.timezone, KeptCode(self.db))

    @property
    def renderer(self) -> Renderer:
        return self.mailer.renderer

    def languages(self) -> set[str]:
        """The languages mail is written in: the config's, the workflows', the défis'."""
        languages = {self.config.language} | {w.language for w in self.workflows if w.language}
        if self.config.roster and self.config.roster.exists():
            languages |= {d.language for d in load_roster(self.config.roster).defis if d.language}
        return languages

    def check_templates(self) -> None:
        """Every mail renders, in every language in use (see ``preflight``)."""
        from .preflight import check

        check(self, self.languages())

    def sync_roster(self) -> Roster | None:
        """Reload the roster file into the database when it changed."""
        path = self.config.roster
        if path is None:
            return None
        mtime = path.stat().st_mtime if path.exists() else None
        if mtime is not None and mtime == self._roster_mtime:
            return None
        roster = load_roster(path)
        if sync_roster(self.db, roster):
            log.info("roster loaded: %d teams, %d staff", len(roster.defis), len(roster.staff))
        self._roster_mtime = mtime
        return roster

    def sync_events(self, now: dt.datetime, report: TickReport | None = None) -> list[str]:
        """Reload the planning file and the calendar when they changed (the URL every 15 min)."""
        sources = self.config.events
        found: list[Event] = []
        loaded: set[str] = set()
        tz, domain = self.config.timezone, self.config.addresses.message_id_domain
        try:
            if sources.planning is not None:
                mtime = sources.planning.stat().st_mtime if sources.planning.exists() else None
                if mtime != self._event_stamps.get("planning"):
                    found += load_planning(sources.planning, tz, domain)
                    loaded.add("planning")
                    self._event_stamps["planning"] = mtime
            if sources.calendar:
                stamp = self._calendar_stamp(now)
                if stamp != self._event_stamps.get("ics"):
                    found += load_ics(sources.calendar, tz, sources.audience, now)
                    loaded.add("ics")
                    self._event_stamps["ics"] = stamp
        except MailflowError as e:  # a source that cannot be read leaves its events as they were
            log.error("events: %s", e)
            if report is not None:
                report.errors.append(str(e))
        if not loaded:
            return []
        changes = sync_events(self.db, found, loaded, now)
        for change in changes:
            log.info("event %s", change)
        return changes

    def _calendar_stamp(self, now: dt.datetime) -> object:
        location = self.config.events.calendar
        if is_url(location):
            return int(now.timestamp() // CALENDAR_REFRESH.total_seconds())
        path = Path(location)
        # Read again each day too: the window of recurring events' occurrences moves on.
        return (path.stat().st_mtime if path.exists() else None, now.date())

    def notify_event_changes(self, now: dt.datetime) -> int:
        """Send updates and cancellations of events whose invitations already went out."""
        rows = unnotified_changes(self.db)
        # Several changes of one event since the last tick make one mail, about how the
        # event is now (cancelled, or changed), with its current sequence.
        pending: dict[str, list[tuple[int, str, str]]] = {}
        for change_id, event_id, _sequence, change, detail in rows:
            pending.setdefault(event_id, []).append((change_id, change, detail))
        queued = 0
        for event_id, changes in pending.items():
            event = get_event(self.db, event_id)
            mails: list[Outgoing] = []
            if event is not None and any(c != Change.CREATED for _, c, _ in changes):
                cancelled = event.status == EventStatus.CANCELLED
                change = Change.CANCELLED if cancelled else Change.CHANGED
                detail = "; ".join(d for _, _, d in changes if d)
                for workflow in self.workflows:
                    mails += change_mails(
                        self.db, self.mailer, workflow, event, change, detail, now
                    )
            with transaction(self.db):
                for mail in mails:
                    queued += outgoing.queue(self.db, mail, now)
                mark_notified(self.db, [c[0] for c in changes], now)
        return queued

    def installed_at(self, now: dt.datetime) -> dt.datetime:
        """The first tick's instant: occurrences due before it are history, not missed work."""
        installed = schedule.setting(self.db, "installed_at")
        if installed:
            return dt.datetime.fromisoformat(installed)
        schedule.set_setting(self.db, "installed_at", iso(now), keep=True)
        return self.installed_at(now)

    def check_instant(self, now: dt.datetime) -> None:
        """Refuse an instant in the future unless the config is a rehearsal."""
        real = dt.datetime.now(dt.UTC)
        if now - real > FUTURE_TOLERANCE and not self.config.rehearsal:
            local = now.astimezone(self.config.timezone).isoformat(timespec="minutes")
            raise ClockError(
                f"{local} is in the future: a real install only acts at the present time "
                "(use `tick --dry-run --at` to see what would be sent then, or set "
                "rehearsal = true in [mailflow] for a rehearsal install)"
            )

    def tick(
        self, now: dt.datetime | None = None, *, fetch: bool = True, deliver_mail: bool = True
    ) -> TickReport:
        """Do everything due at ``now`` (default: the current time); idempotent.

        When the mailbox could not be read (``fetch`` false included), steps whose mail
        depends on what was received are held for a later tick. ``deliver_mail`` false
        leaves what was queued in the outbox (``dry_run`` reads it there).
        """
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.check_instant(now)
        return self._tick(now, fetch=fetch, deliver_mail=deliver_mail)

    def _tick(self, now: dt.datetime, *, fetch: bool, deliver_mail: bool) -> TickReport:
        report = TickReport(now)
        try:
            self.sync_roster()
        except MailflowError as e:  # a roster being edited: keep working with the stored one
            report.errors.append(f"roster not reloaded, the stored one is used: {e}")
            log.error("%s", report.errors[-1])
        self.sync_events(now, report)
        self.prepare_calendars(now.year)
        from ..receiving.answers import handle_inbound
        from ..sending.failures import report_failures
        from ..sending.send import deliver

        report.blind = self._ingest(now, report) if fetch else "the mailbox was not read"
        report.inbound = handle_inbound(
            self.db, self.workflows, self.secret, now,
            receipt=lambda answer: self.receipt(answer, now), desk=self.desk.handle,
            tz=self.config.timezone,
        )  # fmt: skip
        report.steps = self.run_due(now, report)
        self.notify_event_changes(now)
        if not deliver_mail:
            report_failures(self.db, self.mailer, now)
            notices.flush(self.db, self.mailer, self.workflows, now)
            return report
        report.delivery = deliver(self.db, self.config.smtp, now)
        failures = report_failures(self.db, self.mailer, now)
        told = notices.flush(self.db, self.mailer, self.workflows, now)
        if failures or told:  # the staff's own mail goes in the same tick
            report.delivery.add(deliver(self.db, self.config.smtp, now))
        if report.delivery.error:
            report.errors.append(report.delivery.error)
        return report

    def _ingest(self, now: dt.datetime, report: TickReport) -> str:
        """Read the mailbox; returns why it could not be read, "" when it was."""
        from ..receiving.ingest import ingest

        try:
            report.ingest = ingest(self.db, self.config.imap, self.spec)
        except (MailServerError, ConfigError) as e:
            report.errors.append(f"the mailbox could not be read: {e}")
            log.error("ingest: %s", e)
            self._note_blind(now, str(e))
            return str(e)
        schedule.clear_setting(self.db, "blind_since")
        return ""

    def _note_blind(self, now: dt.datetime, error: str) -> None:
        """Tell the staff once when the mailbox has stayed unreadable for a while."""
        schedule.set_setting(self.db, "blind_since", iso(now), keep=True)
        since = dt.datetime.fromisoformat(str(schedule.setting(self.db, "blind_since")))
        if now - since >= BLIND_NOTICE_AFTER:
            key = f"blind:{iso(since)}"
            notices.record(self.db, notices.Notice(key, notices.Kind.BLIND, detail=error), since)

    def dry_run(self, now: dt.datetime | None = None, *, fetch: bool = True) -> DryRun:
        """What a tick at ``now`` would send, changing nothing: a tick on a copy of the database.

        The mailbox is read (read-only, as always; unless ``fetch`` is false, as for a tick
        with ``--no-fetch``) into the copy; nothing is delivered, and
        any instant may be asked, so that the staff can check next Friday's mail on the
        live install.
        """
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        with tempfile.TemporaryDirectory(prefix="mailflow-dry-run-") as tmp:
            path = Path(tmp) / "copy.db"
            target = sqlite3.connect(path)
            try:
                self.db.conn.backup(target)
            finally:
                target.close()
            twin = Engine(self.config, open_db(path), preflight=False)
            try:
                report = twin._tick(now, fetch=fetch, deliver_mail=False)
                mails = outgoing.due(twin.db, now)
                subjects = outgoing.subjects(twin.db)
            finally:
                twin.db.conn.close()
        return DryRun(report, [(m, subjects[m.id]) for m in mails])

    def receipt(self, answer: Answer | PresenceNote, now: dt.datetime) -> Outgoing:
        from ..programme.receipts import receipt_for

        return receipt_for(self.db, self.mailer, answer, now)

    def occurrences(self, workflow: Workflow, start: dt.date, end: dt.date) -> list[Occurrence]:
        """The occurrences of a workflow whose day lies between ``start`` and ``end``.

        For an event workflow, one per confirmed event of its kinds starting in that span.
        """
        tz = self.config.timezone
        if workflow.schedule.every == "event":
            begin = dt.datetime.combine(start, dt.time(0), tzinfo=tz)
            finish = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
            kinds = workflow.schedule.kinds
            return [
                Occurrence(workflow, f"ev-{e.id}", e.local_day(tz), e)
                for e in upcoming(self.db, begin, finish)
                if begin <= e.starts < finish and (not kinds or e.kind in kinds)
            ]
        found = []
        # A holiday moves an occurrence earlier than its nominal day: look a week ahead.
        for occurrence in occurrences_around(workflow.schedule, start, end + dt.timedelta(days=7)):
            day = occurrence_day(workflow.schedule, occurrence)
            if day is not None and start <= day <= end + dt.timedelta(days=7):
                found.append(Occurrence(workflow, occurrence, day))
        return found

    def _candidates(
        self, now: dt.datetime, back: dt.timedelta
    ) -> list[tuple[Occurrence, Step, dt.datetime]]:
        tz = self.config.timezone
        today = now.astimezone(tz).date()
        result = []
        for workflow in self.workflows:
            ahead = dt.timedelta(days=max(s.days_before for s in workflow.steps) + 14)
            for occ in self.occurrences(
                workflow, (now - back).astimezone(tz).date(), today + ahead
            ):
                for step in workflow.steps:
                    result.append((occ, step, due_at(step, occ.day, tz, workflow.schedule)))
        return result

    def due_steps(self, now: dt.datetime) -> list[tuple[Occurrence, dt.datetime, str]]:
        """(occurrence, due instant, step id) for every step due by ``now`` that has not run."""
        installed = self.installed_at(now)
        done = schedule.done_since(self.db, now - LOOKBACK - dt.timedelta(days=62))
        skipped = schedule.skipped_occurrences(self.db)
        result = [
            (occ, due, step.id)
            for occ, step, due in self._candidates(now, LOOKBACK)
            if installed <= due <= now
            and (occ.workflow.name, occ.id, step.id) not in done
            and (occ.workflow.name, occ.id) not in skipped
        ]
        return sorted(result, key=lambda r: (r[1], r[0].workflow.name))

    def next_due(self, now: dt.datetime) -> dt.datetime | None:
        """The next instant after ``now`` when a step is due or a mail is to be retried."""
        candidates = [due for _, _, due in self._candidates(now, dt.timedelta(days=1)) if due > now]
        retry = outgoing.next_retry(self.db, now)
        if retry is not None:
            candidates.append(retry)
        return min(candidates, default=None)

    def run_due(self, now: dt.datetime, report: TickReport | None = None) -> list[StepRun]:
        runs = []
        blind = report.blind if report is not None else ""
        for occ, due, step_id in self.due_steps(now):
            step = occ.workflow.step(step_id)
            try:
                runs.append(
                    run_step(self.db, self.mailer, occ, step, due, now, blind)
                )  # fmt: skip
            except Exception as e:
                # A broken template (or a bug) in one step must not stop the other steps,
                # nor delivery; the step is tried again at the next tick, within its grace,
                # and the staff are told once.
                message = f"{occ.workflow.name} {occ.id} {step.id}: {type(e).__name__}: {e}"
                if report is not None:
                    report.errors.append(message)
                error = f"{type(e).__name__}: {e}" if not isinstance(e, MailflowError) else str(e)
                if notices.record(self.db, failed_notice(occ, step, error), now):
                    log.log(logging.ERROR, message, exc_info=not isinstance(e, MailflowError))
                if now - due > step.grace:
                    runs.append(give_up(self.db, occ, step, due, now, error))
        return runs
