"""The staff alias: commands by mail, help requests, and staff replies that settle them.

Mail to the alias (or from the staff to the shared mailbox) is taken, in this order, for:

- a **command**, when its subject starts with a command keyword: obeyed only when the
  sender is on the staff list and the trusted receiving server's Authentication-Results
  shows DKIM, SPF or DMARC passing for the From domain. Obeyed, the sender gets a
  confirmation saying what was done, or an error saying what was wrong; refused, it is
  stored, not executed, and the staff are told. Every command is logged (``commands``).
- a **staff reply** that answers a help request (by In-Reply-To/References), which
  takes that request off the staff's reminder list;
- a **help request**, when anyone else writes to the alias: kept until a staff member
  answers (or a "handled" command), and listed in the staff's daily reminder meanwhile.

Automatic mail (out-of-office, bounces) never gets an answer: no mail loops.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlite_utils

from . import authresults, tokens
from .commands import Command, CommandError, Vocabulary, parse_command, parse_date, parse_hour
from .config import Config
from .digest import digest_context
from .events import AUDIENCES, KINDS, Event, get_event, save_event
from .occurrences import nominal_day, occurrence_day, occurrence_id
from .outbox import Outgoing, iso
from .parse import ParsedMessage
from .render import Renderer, build_message
from .roster import defi_respondent, defis_of, is_staff, respondent_info, stored_roster
from .steps import Occurrence, answered, base_context, recipients
from .workflow import Workflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """What a message to the alias is, and what to do about it inside its transaction."""

    kind: str  # command, help, staff_reply
    status: str
    act: Callable[[sqlite_utils.Database], list[Outgoing]]


@dataclass(frozen=True)
class Outcome:
    verb: str
    ok: bool
    code: str
    data: dict[str, Any]
    mails: tuple[Outgoing, ...] = ()


@dataclass(frozen=True)
class Done:
    """What a command did: a code for the reply template, its data, mails it sends."""

    code: str
    data: dict[str, Any]
    mails: tuple[Outgoing, ...] = ()


class Desk:
    """The alias, bound to a configured mailflow."""

    def __init__(
        self,
        config: Config,
        renderer: Renderer,
        secret: str,
        workflows: Callable[[], list[Workflow]],
        vocabulary: Vocabulary,
    ) -> None:
        self.config = config
        self.renderer = renderer
        self.secret = secret
        self.workflows = workflows
        self.vocabulary = vocabulary

    # -- routing -------------------------------------------------------------------------
    def handle(
        self, db: sqlite_utils.Database, message: int, parsed: ParsedMessage, now: dt.datetime
    ) -> Handled | None:
        """None for mail that is not the alias's business (answers, automatic mail)."""
        if parsed.automatic:
            return None
        sender = (parsed.from_address or "").lower()
        to_alias = self.config.addresses.alias.lower() in {
            a.lower() for a in (*parsed.to, *parsed.cc)
        }
        staff = bool(sender) and (
            is_staff(db, sender) or sender == self.config.addresses.sender.lower()
        )
        if not (to_alias or staff):
            return None
        if tokens.first_token(self.secret, parsed.thread_ids) is not None and not to_alias:
            return None  # a staff member answering a workflow mail: the workflow's business
        command = parse_command(parsed.subject, parsed.text, self.vocabulary)
        if command is not None and to_alias:
            return self._command(db, message, parsed, command, sender, now)
        if staff:
            answered_ids = self._settles(db, parsed)
            if answered_ids:
                return Handled(
                    "staff_reply", "recorded", lambda d: self._settle(d, answered_ids, sender, now)
                )
            return None
        if to_alias:
            return Handled("help", "waiting", lambda d: self._help(d, message, parsed, sender, now))
        return None

    def _settles(self, db: sqlite_utils.Database, parsed: ParsedMessage) -> list[int]:
        ids = list(parsed.thread_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            "select message from help_requests where answered_at is null"
            f" and message_id in ({marks})",
            ids,
        )
        return [row[0] for row in rows]

    def _settle(
        self, db: sqlite_utils.Database, requests: list[int], by: str, now: dt.datetime
    ) -> list[Outgoing]:
        for request in requests:
            db.execute(
                "update help_requests set answered_at = ?, answered_by = ? where message = ?",
                [iso(now), by, request],
            )
        return []

    def _help(
        self,
        db: sqlite_utils.Database,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> list[Outgoing]:
        defis = defis_of(db, sender)
        db.execute(
            "insert or ignore into help_requests (message, sender, respondent, subject, message_id,"
            " received_at) values (?, ?, ?, ?, ?, ?)",
            [
                message,
                sender,
                defi_respondent(defis[0]) if len(defis) == 1 else None,
                parsed.subject,
                parsed.message_id,
                iso(now),
            ],
        )
        return []

    # -- commands -------------------------------------------------------------------------
    def _command(
        self,
        db: sqlite_utils.Database,
        message: int,
        parsed: ParsedMessage,
        command: Command,
        sender: str,
        now: dt.datetime,
    ) -> Handled:
        refusal: tuple[str, str] | None
        if not is_staff(db, sender):
            refusal = ("not_staff", f"{sender} is not on the staff list")
        else:
            verdict = authresults.check(
                parsed.authentication_results, sender, self.config.security.trusted_authserv_ids
            )
            refusal = None if verdict.ok else (verdict.reason, verdict.detail)
        if refusal is not None:
            code, detail = refusal
            log.warning("command %r from %s refused: %s", command.verb, sender, detail)

            def refuse(d: sqlite_utils.Database) -> list[Outgoing]:
                self._log(d, message, sender, command, "refused", f"{code}: {detail}", now)
                return [self._refusal_mail(d, message, parsed, command, code, detail, now)]

            return Handled("command", "refused", refuse)

        def obey(d: sqlite_utils.Database) -> list[Outgoing]:
            outcome = self.execute(d, command, message, parsed, sender, now)
            summary = json.dumps(outcome.data, default=str, ensure_ascii=False)
            status = "done" if outcome.ok else "failed"
            self._log(d, message, sender, command, status, f"{outcome.code} {summary}", now)
            return [*outcome.mails, self._reply_mail(message, parsed, outcome, now)]

        return Handled("command", "executed", obey)

    def _log(
        self,
        db: sqlite_utils.Database,
        message: int,
        sender: str,
        command: Command,
        status: str,
        outcome: str,
        now: dt.datetime,
    ) -> None:
        db.execute(
            "insert or replace into commands (message, sender, verb, arguments, status, outcome,"
            " created_at) values (?, ?, ?, ?, ?, ?, ?)",
            [
                message,
                sender,
                command.verb,
                json.dumps(command.arguments, ensure_ascii=False),
                status,
                outcome,
                iso(now),
            ],
        )
        log.info("command %s from %s: %s (%s)", command.verb, sender, status, outcome)

    def execute(
        self,
        db: sqlite_utils.Database,
        command: Command,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> Outcome:
        """Do what a command says; a wrong argument gives a failed outcome, never an exception."""
        action = getattr(self, f"_do_{command.verb}")
        try:
            done: Done = action(db, command, message, parsed, sender, now)
        except CommandError as e:
            return Outcome(command.verb, False, e.code, dict(e.data))
        return Outcome(command.verb, True, done.code, done.data, done.mails)

    def _main_workflow(self, command: Command) -> Workflow:
        name = command.get("workflow")
        collecting = [w for w in self.workflows() if w.collect is not None]
        if name:
            for w in collecting:
                if w.name == name:
                    return w
            raise CommandError("unknown_workflow", workflow=name)
        asking = [w for w in collecting if any(s.to == "each_defi" for s in w.steps)]
        if not (asking or collecting):
            raise CommandError("unknown_workflow", workflow="")
        return (asking or collecting)[0]

    def _occurrence(self, workflow: Workflow, command: Command, now: dt.datetime) -> str:
        week = command.get("week")
        if not week:
            return occurrence_id(workflow.schedule, now.astimezone(self.config.timezone).date())
        try:
            nominal_day(workflow.schedule, week)
        except ValueError:
            raise CommandError("bad_week", value=week) from None
        return week

    def _do_event(self, db: sqlite_utils.Database, command: Command, *_: Any) -> Done:
        event_id = command.require("id").lower()
        if not all(c.isalnum() or c == "-" for c in event_id):
            raise CommandError("bad_id", value=event_id)
        existing = get_event(db, event_id)
        tz = self.config.timezone
        if existing is None:
            day = parse_date(command.require("date"), "date")
            event = Event(
                event_id,
                f"{event_id}@{self.config.addresses.message_id_domain}",
                "session",
                command.require("title"),
                *self._span(command, day, tz, None),
                source="mail",
            )
        else:
            day = (
                parse_date(command.get("date"), "date")
                if command.get("date")
                else existing.local_day(tz)
            )
            starts, ends, all_day = self._span(command, day, tz, existing)
            event = replace(
                existing,
                title=command.get("title") or existing.title,
                starts=starts,
                ends=ends,
                all_day=all_day,
                status="confirmed",
            )
        updates: dict[str, Any] = {}
        for key in ("place", "theme", "agenda"):
            if command.get(key):
                updates[key] = command.get(key)
        if command.get("kind"):
            updates["kind"] = self._choice(command, "kind", KINDS)
        if command.get("audience"):
            updates["audience"] = self._choice(command, "audience", AUDIENCES)
        event = replace(event, **updates)
        change = save_event(db, event) or "unchanged"
        return Done(change, {"event": event.as_context(tz)})

    def _span(
        self, command: Command, day: dt.date, tz: Any, existing: Event | None
    ) -> tuple[dt.datetime, dt.datetime, bool]:
        last = parse_date(command.get("end_date"), "end_date") if command.get("end_date") else day
        start, end = command.get("start"), command.get("end")
        if not start and existing is not None and not existing.all_day:
            start = existing.starts.astimezone(tz).strftime("%H:%M")
            end = end or existing.ends.astimezone(tz).strftime("%H:%M")
        if not start:
            return (
                dt.datetime.combine(day, dt.time(0), tzinfo=tz),
                dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=tz),
                True,
            )
        starts = dt.datetime.combine(day, parse_hour(start, "start"), tzinfo=tz)
        ends = (
            dt.datetime.combine(last, parse_hour(end, "end"), tzinfo=tz)
            if end
            else starts + dt.timedelta(hours=2)
        )
        if ends <= starts:
            raise CommandError("end_before_start", value=end)
        return starts, ends, False

    def _choice(self, command: Command, key: str, choices: tuple[str, ...]) -> str:
        found = self.vocabulary.value(command.get(key), choices)
        if found is None:
            raise CommandError(
                "bad_value", key=key, value=command.get(key), choices=", ".join(choices)
            )
        return found

    def _do_cancel_event(self, db: sqlite_utils.Database, command: Command, *_: Any) -> Done:
        event = get_event(db, command.require("id").lower())
        if event is None:
            raise CommandError("unknown_event", id=command.get("id"))
        save_event(db, replace(event, status="cancelled"))
        return Done("cancelled", {"event": event.as_context(self.config.timezone)})

    def _do_skip(
        self,
        db: sqlite_utils.Database,
        command: Command,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> Done:
        workflow = self._main_workflow(command)
        occurrence = self._occurrence(workflow, command, now)
        started = db.execute(
            "select count(*) from runs where workflow = ? and occurrence = ?",
            [workflow.name, occurrence],
        ).fetchone()[0]
        db.execute(
            "insert or replace into skipped_occurrences (workflow, occurrence, reason, created_at)"
            " values (?, ?, ?, ?)",
            [workflow.name, occurrence, command.get("reason") or f"asked by {sender}", iso(now)],
        )
        data = {"workflow": workflow.title, "week": occurrence, "started": bool(started)}
        return Done("skipped", data)

    def _do_announce(
        self,
        db: sqlite_utils.Database,
        command: Command,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> Done:
        text = command.get("text") or command.text
        if not text:
            raise CommandError("missing_key", key="text")
        workflow = self._main_workflow(command)
        db.execute(
            "insert into announcements (workflow, text, author, message, created_at)"
            " values (?, ?, ?, ?, ?)",
            [workflow.name, text, sender, message, iso(now)],
        )
        return Done("announced", {"workflow": workflow.title, "text": text})

    def _do_missing(
        self,
        db: sqlite_utils.Database,
        command: Command,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> Done:
        workflow = self._main_workflow(command)
        occurrence = self._occurrence(workflow, command, now)
        day = occurrence_day(workflow.schedule, occurrence) or nominal_day(
            workflow.schedule, occurrence
        )
        occ = Occurrence(workflow, occurrence, day)
        roster = stored_roster(db)
        asked = [r.id for r in recipients(db, self.config, occ, workflow.steps[0], "each_defi")]
        done = answered(db, workflow.name, occurrence)
        names = [respondent_info(roster, r)["name"] for r in asked if r not in done]
        data = {
            "workflow": workflow.title,
            "week": occurrence,
            "missing": names,
            "answered": len(asked) - len(names),
            "asked": len(asked),
        }
        return Done("listed", data)

    def _do_resend(
        self,
        db: sqlite_utils.Database,
        command: Command,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> Done:
        workflow = self._main_workflow(command)
        occurrence = self._occurrence(workflow, command, now)
        step = next((s for s in workflow.steps if s.action == "digest"), None)
        if step is None:
            raise CommandError("no_digest", workflow=workflow.name)
        target = command.get("recipient")
        if not target:
            to = sender
        elif self.vocabulary.value(target, ("cohort",)):
            to = self.config.addresses.cohort
        elif "@" in target:
            to = target.strip("<> ").lower()
        else:
            raise CommandError("bad_value", key="recipient", value=target, choices="promo, address")
        day = occurrence_day(workflow.schedule, occurrence) or nominal_day(
            workflow.schedule, occurrence
        )
        occ = Occurrence(workflow, occurrence, day)
        context = base_context(self.config, occ, now, now, False)
        context |= digest_context(db, workflow, occurrence, day, self.config.timezone)
        context |= {
            "language": self.config.language,
            "recipient": "resend",
            "who": None,
            "defi": None,
            "name": "",
            "step": step.id,
        }
        rendered = self.renderer.render(step.template, self.config.language, context)
        key = f"{workflow.name}:{occurrence}:resend{message}:{to}"
        mail = self._mail(key, workflow.name, occurrence, f"resend{message}", [to], rendered, now)
        return Done("resent", {"workflow": workflow.title, "week": occurrence, "to": to}, (mail,))

    def _do_handled(
        self,
        db: sqlite_utils.Database,
        command: Command,
        message: int,
        parsed: ParsedMessage,
        sender: str,
        now: dt.datetime,
    ) -> Done:
        who = command.get("sender").strip("<> ").lower()
        requests = self._settles(db, parsed)
        if who:
            rows = db.execute(
                "select message from help_requests where answered_at is null and sender = ?", [who]
            )
            requests += [r[0] for r in rows]
        if not requests:
            raise CommandError("nothing_waiting", sender=who)
        self._settle(db, requests, sender, now)
        return Done("settled", {"count": len(requests), "sender": who})

    def _do_help(self, *_: Any) -> Done:
        return Done("help", {})

    # -- mail -----------------------------------------------------------------------------
    def _mail(
        self,
        key: str,
        workflow: str,
        occurrence: str,
        step: str,
        to: list[str],
        rendered: Any,
        now: dt.datetime,
    ) -> Outgoing:
        token = tokens.Token(workflow, occurrence, step, "staff")
        message_id = tokens.message_id(self.secret, token, self.config.addresses.message_id_domain)
        raw = build_message(
            rendered,
            sender=self.config.addresses.sender,
            sender_name=self.config.addresses.sender_name,
            to=to,
            reply_to=self.config.addresses.alias,
            message_id=message_id,
            date=now,
        )
        return Outgoing(
            key,
            workflow,
            occurrence,
            step,
            "staff",
            tuple(to),
            self.config.addresses.sender,
            message_id,
            rendered.subject,
            raw,
        )

    def _reply_mail(
        self, message: int, parsed: ParsedMessage, outcome: Outcome, now: dt.datetime
    ) -> Outgoing:
        context = {
            "outcome": {
                "verb": outcome.verb,
                "ok": outcome.ok,
                "code": outcome.code,
                **outcome.data,
            },
            "subject": parsed.subject,
            "vocabulary": self.vocabulary.verbs,
            "programme": {
                "name": self.config.addresses.sender_name,
                "alias": self.config.addresses.alias,
            },
        }
        rendered = self.renderer.render("commands/reply", self.config.language, context)
        sender = (parsed.from_address or "").lower()
        return self._mail(
            f"alias:{now:%Y%m%d}:reply{message}:staff",
            "alias",
            now.strftime("%Y%m%d"),
            f"reply{message}",
            [sender],
            rendered,
            now,
        )

    def _refusal_mail(
        self,
        db: sqlite_utils.Database,
        message: int,
        parsed: ParsedMessage,
        command: Command,
        code: str,
        detail: str,
        now: dt.datetime,
    ) -> Outgoing:
        staff = [s.address for s in stored_roster(db).staff] or [self.config.addresses.alias]
        context = {
            "refusal": {
                "code": code,
                "detail": detail,
                "verb": command.verb,
                "sender": parsed.from_address or "",
                "subject": parsed.subject,
            },
            "programme": {
                "name": self.config.addresses.sender_name,
                "alias": self.config.addresses.alias,
            },
        }
        rendered = self.renderer.render("commands/refused", self.config.language, context)
        return self._mail(
            f"alias:{now:%Y%m%d}:refused{message}:staff",
            "alias",
            now.strftime("%Y%m%d"),
            f"refused{message}",
            staff,
            rendered,
            now,
        )
