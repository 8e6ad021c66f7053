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
from dataclasses import dataclass, field

import sqlite_utils

from . import tokens
from .answers import InboundReport, handle_inbound
from .config import Config
from .db import open_db, transaction
from .errors import MailflowError, MailServerError
from .ingest import IngestReport, ingest
from .occurrences import due_at, occurrence_day, occurrences_around
from .outbox import Outgoing, iso
from .render import Renderer, build_message
from .roster import Roster, load_roster, sync_roster
from .send import DeliveryReport, deliver
from .steps import Answer, Occurrence, StepRun, acknowledgement, run_step
from .workflow import load_workflows, merged_spec

log = logging.getLogger(__name__)

LOOKBACK = dt.timedelta(days=14)


@dataclass
class TickReport:
    now: dt.datetime
    ingest: IngestReport | None = None
    inbound: InboundReport | None = None
    steps: list[StepRun] = field(default_factory=list)
    delivery: DeliveryReport | None = None
    errors: list[str] = field(default_factory=list)


class Engine:
    """A configured mailflow: its database, workflows, templates and roster."""

    def __init__(self, config: Config, db: sqlite_utils.Database | None = None) -> None:
        self.config = config
        self.db = db if db is not None else open_db(config.database)
        self.workflows = load_workflows(config.workflows_dir)
        self.renderer = Renderer(config.templates_dir)
        self.spec = merged_spec(self.workflows)
        self.secret = tokens.secret_for(self.db, config.security.secret)
        self._roster_mtime: float | None = None
        self.check_templates()
        self.sync_roster()

    def reload(self) -> None:
        """Load the workflow files and templates again; all valid, or nothing changes."""
        workflows = load_workflows(self.config.workflows_dir)
        renderer = Renderer(self.config.templates_dir)
        previous = (self.workflows, self.renderer)
        self.workflows, self.renderer = workflows, renderer
        try:
            self.check_templates()
        except MailflowError:
            self.workflows, self.renderer = previous
            raise
        self.spec = merged_spec(workflows)

    def check_templates(self) -> None:
        """Every step's templates exist and compile, in every language in use."""
        languages = {self.config.language} | {w.language for w in self.workflows if w.language}
        if self.config.roster and self.config.roster.exists():
            languages |= {d.language for d in load_roster(self.config.roster).defis if d.language}
        for workflow in self.workflows:
            templates = [s.template for s in workflow.steps]
            templates += [workflow.acknowledge] if workflow.acknowledge else []
            for template in templates:
                for language in sorted(languages):
                    self.renderer.check(template, language)

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
            log.info("roster loaded: %d défis, %d staff", len(roster.defis), len(roster.staff))
        self._roster_mtime = mtime
        return roster

    def installed_at(self, now: dt.datetime) -> dt.datetime:
        """The first tick's instant: occurrences due before it are history, not missed work."""
        row = self.db.execute("select value from settings where key = 'installed_at'").fetchone()
        if row:
            return dt.datetime.fromisoformat(row[0])
        with transaction(self.db):
            self.db.execute(
                "insert or ignore into settings (key, value) values ('installed_at', ?)", [iso(now)]
            )
        return self.installed_at(now)

    def tick(self, now: dt.datetime | None = None, *, fetch: bool = True) -> TickReport:
        """Do everything due at ``now`` (default: the current time); idempotent."""
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        report = TickReport(now)
        self.sync_roster()
        if fetch:
            try:
                report.ingest = ingest(self.db, self.config.imap, self.spec)
            except MailServerError as e:
                report.errors.append(str(e))
                log.error("ingest: %s", e)
        report.inbound = handle_inbound(
            self.db,
            self.workflows,
            self.secret,
            now,
            receipt=lambda answer: self.receipt(answer, now),
        )
        report.steps = self.run_due(now, report)
        report.delivery = deliver(self.db, self.config.smtp, now)
        if self.report_failures(now):
            more = deliver(self.db, self.config.smtp, now)
            report.delivery.sent += more.sent
        if report.delivery.error:
            report.errors.append(report.delivery.error)
        return report

    def receipt(self, answer: Answer, now: dt.datetime) -> Outgoing:
        return acknowledgement(self.db, self.config, self.renderer, self.secret, answer, now)

    def due_steps(self, now: dt.datetime) -> list[tuple[Occurrence, dt.datetime, str]]:
        """(occurrence, due instant, step id) for every step due by ``now`` that has not run."""
        tz = self.config.timezone
        installed = self.installed_at(now)
        today = now.astimezone(tz).date()
        done = {
            (w, o, s)
            for w, o, s in self.db.execute(
                "select workflow, occurrence, step from runs where due_at >= ?",
                [iso(now - LOOKBACK - dt.timedelta(days=62))],
            )
        }
        skipped = {
            tuple(r)
            for r in self.db.execute("select workflow, occurrence from skipped_occurrences")
        }
        result = []
        for workflow in self.workflows:
            # A holiday moves an occurrence earlier than its nominal day: look a week ahead.
            ahead = max(s.days_before for s in workflow.steps) + 7
            start, end = today - LOOKBACK, today + dt.timedelta(days=ahead)
            for occurrence in occurrences_around(workflow.schedule, start, end):
                day = occurrence_day(workflow.schedule, occurrence)
                if day is None or (workflow.name, occurrence) in skipped:
                    continue
                for step in workflow.steps:
                    due = due_at(step, day, tz, workflow.schedule)
                    key = (workflow.name, occurrence, step.id)
                    if installed <= due <= now and key not in done:
                        result.append((Occurrence(workflow, occurrence, day), due, step.id))
        return sorted(result, key=lambda r: (r[1], r[0].workflow.name))

    def next_due(self, now: dt.datetime) -> dt.datetime | None:
        """The next instant after ``now`` when a step is due or a mail is to be retried."""
        tz = self.config.timezone
        today = now.astimezone(tz).date()
        candidates = []
        for workflow in self.workflows:
            ahead = max(s.days_before for s in workflow.steps) + 14
            for occurrence in occurrences_around(workflow.schedule, today - dt.timedelta(days=7),
                                                 today + dt.timedelta(days=ahead)):  # fmt: skip
                day = occurrence_day(workflow.schedule, occurrence)
                if day is not None:
                    candidates += [
                        d
                        for s in workflow.steps
                        if (d := due_at(s, day, tz, workflow.schedule)) > now
                    ]
        row = self.db.execute(
            "select min(next_attempt_at) from outbox"
            " where status = 'queued' and next_attempt_at > ?",
            [iso(now)],
        ).fetchone()
        if row and row[0]:
            candidates.append(dt.datetime.fromisoformat(row[0]))
        return min(candidates, default=None)

    def run_due(self, now: dt.datetime, report: TickReport | None = None) -> list[StepRun]:
        runs = []
        for occ, due, step_id in self.due_steps(now):
            step = occ.workflow.step(step_id)
            try:
                runs.append(
                    run_step(self.db, self.config, self.renderer, self.secret, occ, step, due, now)
                )
            except MailflowError as e:
                # A broken template must not stop the other workflows; it is retried next tick.
                message = f"{occ.workflow.name} {occ.id} {step.id}: {e}"
                log.error(message)
                if report is not None:
                    report.errors.append(message)
        return runs

    def report_failures(self, now: dt.datetime) -> bool:
        """Queue one mail to the staff listing mail that failed for good; True if queued."""
        rows = self.db.execute(
            "select id, key, to_addrs, subject, error, refused from outbox"
            " where reported_at is null and recipient not in ('staff', 'alias')"
            " and (status = 'failed' or refused is not null) order by id"
        ).fetchall()
        if not rows:
            return False
        failures = [
            {"key": r[1], "to": r[2], "subject": r[3], "error": r[4] or "", "refused": r[5] or ""}
            for r in rows
        ]
        staff = self.db.execute("select address from staff order by address").fetchall()
        to = [s[0] for s in staff] or [self.config.addresses.alias]
        token = tokens.Token("system", now.strftime("%Y%m%d"), "failures", f"o{rows[0][0]}")
        message_id = tokens.message_id(self.secret, token, self.config.addresses.message_id_domain)
        rendered = self.renderer.render(
            "system/failures",
            self.config.language,
            {"failures": failures, "now": now.astimezone(self.config.timezone)},
        )
        addresses = self.config.addresses
        raw = build_message(
            rendered, sender=addresses.sender, sender_name=addresses.sender_name, to=to,
            reply_to=addresses.reply_to, message_id=message_id, date=now,
        )  # fmt: skip
        mail = Outgoing(
            f"system:failures:{rows[0][0]}-{rows[-1][0]}", "system", token.occurrence, "failures",
            "staff", tuple(to), self.config.addresses.sender, message_id, rendered.subject, raw,
        )  # fmt: skip
        from .outbox import queue

        with transaction(self.db):
            queue(self.db, mail, now)
            marks = ",".join("?" * len(rows))
            self.db.execute(
                f"update outbox set reported_at = ? where id in ({marks})",
                [iso(now), *[r[0] for r in rows]],
            )
        return True
