"""Commands by mail: the subject names what to do, ``key: value`` lines say how.

The vocabulary (keywords, key names and value words, in French and English) is data,
in ``templates/commands.toml``. This module reads a command out of a message, checks its
arguments and carries it out (``Executor``); ``alias`` decides whether to obey it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigError
from ..programme.absences import away_on, away_until
from ..programme.audiences import respondents
from ..programme.events import AUDIENCES, KINDS, Event, get_event, save_event
from ..programme.occurrences import day_of, nominal_day, occurrence_id
from ..programme.roster import respondent_info, stored_roster
from ..programme.steps import Occurrence
from ..programme.workflow import Workflow, digest_steps, main_workflow
from ..sending import tokens
from ..store import desk, inbound, outgoing, schedule
from ..store.db import Database
from ..store.outgoing import Outgoing
from ..store.states import EventStatus
from ..tomltable import Table
from .parse import ParsedMessage
from .sections import normalize

if TYPE_CHECKING:
    from ..sending.compose import Mailer

_SUBJECT_PREFIX = re.compile(r"^\s*(\[?mailflow\]?\s*:?\s*)", re.I)
_KEY_LINE = re.compile(r"^\s*[-*•]?\s*([^:：]{1,40}?)\s*[:：]\s*(.*)$")
_DATE_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_TIME = re.compile(r"^(\d{1,2})\s*(?:[h:]\s*(\d{2})?)?$", re.I)
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
MULTILINE = ("agenda", "text")


class CommandError(Exception):
    """A command's arguments are wrong; ``code`` and ``data`` let the reply template say how."""

    def __init__(self, code: str, **data: str) -> None:
        super().__init__(f"{code}: {data}")
        self.code = code
        self.data = data


@dataclass(frozen=True)
class Vocabulary:
    verbs: dict[str, tuple[str, ...]]
    keys: dict[str, tuple[str, ...]]
    values: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        root = Table.from_file(path)
        tables = []
        for name in ("verbs", "keys", "values"):
            table = root.table(name, required=True)
            tables.append({k: tuple(normalize(w) for w in table.strings(k)) for k in table.data})
            table.done()
        root.done()
        unknown = [verb for verb in tables[0] if verb not in HANDLERS]
        if unknown:
            raise ConfigError(
                f"verbs.{unknown[0]}", "a verb mailflow can carry out: " + ", ".join(HANDLERS),
                source=str(path),
            )  # fmt: skip
        return cls(*tables)

    def value(self, word: str, choices: tuple[str, ...]) -> str | None:
        """The canonical value among ``choices`` that ``word`` names, if any."""
        word = normalize(word)
        for choice in choices:
            if word == choice or word in self.values.get(choice, ()):
                return choice
        return None


@dataclass
class Command:
    verb: str
    arguments: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def get(self, key: str, default: str = "") -> str:
        return self.arguments.get(key, default).strip()

    def require(self, key: str) -> str:
        value = self.get(key)
        if not value:
            raise CommandError("missing_key", key=key)
        return value


def parse_command(subject: str, text: str, vocabulary: Vocabulary) -> Command | None:
    """The command a message carries, None when its subject names none.

    The subject must be a keyword and nothing else: case, accents, a ``mailflow:`` prefix
    and final punctuation (a colon too) do not matter. Anything after the keyword makes it
    an ordinary message: "Aide : accès à la plateforme" and "Aide pour notre mise en
    production" are requests for help, not the ``help`` command.
    """
    head = normalize(_SUBJECT_PREFIX.sub("", subject))
    head = re.sub(r"[\s?!.:;,]+$", "", head).strip()
    verb = next((v for v, words in vocabulary.verbs.items() if head in words), None)
    if verb is None:
        return None
    command = Command(verb)
    _arguments(command, text, vocabulary)
    return command


def _arguments(command: Command, text: str, vocabulary: Vocabulary) -> None:
    by_word = {w: key for key, words in vocabulary.keys.items() for w in words}
    current: str | None = None
    free: list[str] = []
    for line in text.splitlines():
        found = _KEY_LINE.match(line)
        key = by_word.get(normalize(found.group(1))) if found else None
        if found and key:
            current = key
            command.arguments[key] = found.group(2).strip()
        elif current in MULTILINE and line.strip():
            # A multi-line value (an agenda) runs until a blank line.
            command.arguments[current] = command.arguments[current] + "\n" + line
        else:
            current = None
            free.append(line)
    command.text = "\n".join(free).strip()


def parse_date(value: str, key: str) -> dt.date:
    value = value.strip()
    found = _DATE_DMY.match(value)
    try:
        if found:
            return dt.date(int(found.group(3)), int(found.group(2)), int(found.group(1)))
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError("bad_date", key=key, value=value) from None


def parse_hour(value: str, key: str) -> dt.time:
    found = _TIME.match(value.strip())
    if found:
        hour, minute = int(found.group(1)), int(found.group(2) or 0)
        if hour < 24 and minute < 60:
            return dt.time(hour, minute)
    raise CommandError("bad_time", key=key, value=value.strip())


# -- doing what commands say -------------------------------------------------------------


class Request(NamedTuple):
    """One command to execute, with where it came from."""

    db: Database
    command: Command
    message: int
    parsed: ParsedMessage
    sender: str
    now: dt.datetime


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


@dataclass(frozen=True)
class SentDigest:
    occurrence: str
    subject: str
    sent_at: dt.datetime
    raw: bytes


def sent_digest(
    db: Database, workflow: str, step: str, occurrence: str | None
) -> SentDigest | None:
    """The digest mail of a step as it went out: that occurrence's, or the last one sent."""
    row = outgoing.last_sent(db, workflow, step, occurrence)
    if row is None:
        return None
    return SentDigest(row[0], row[1], dt.datetime.fromisoformat(row[2]), row[3])


Handler = Callable[["Executor", "Request"], "Done"]
HANDLERS: dict[str, Handler] = {}


def handles(verb: str) -> Callable[[Handler], Handler]:
    """Make a method of ``Executor`` the handler of a verb of ``templates/commands.toml``."""

    def register(handler: Handler) -> Handler:
        HANDLERS[verb] = handler
        return handler

    return register


class Executor:
    """Carries out staff commands (their authority was checked by the alias desk)."""

    def __init__(
        self, mailer: Mailer, workflows: Callable[[], list[Workflow]], vocabulary: Vocabulary
    ) -> None:
        self.mailer = mailer
        self.config = mailer.config
        self.workflows = workflows
        self.vocabulary = vocabulary

    def execute(self, r: Request) -> Outcome:
        """Do what a command says; a wrong argument gives a failed outcome, never an exception."""
        try:
            done = HANDLERS[r.command.verb](self, r)
        except CommandError as e:
            return Outcome(r.command.verb, False, e.code, dict(e.data))
        return Outcome(r.command.verb, True, done.code, done.data, done.mails)

    def _main_workflow(self, command: Command) -> Workflow:
        name = command.get("workflow")
        collecting = [w for w in self.workflows() if w.collect is not None]
        try:
            return main_workflow(collecting, name or None)
        except KeyError:
            raise CommandError("unknown_workflow", workflow=name) from None

    def _occurrence(self, workflow: Workflow, command: Command, now: dt.datetime) -> str:
        week = command.get("week")
        if not week:
            return occurrence_id(workflow.schedule, now.astimezone(self.config.timezone).date())
        try:
            nominal_day(workflow.schedule, week)
        except ValueError:
            raise CommandError("bad_week", value=week) from None
        return week

    @handles("event")
    def _do_event(self, r: Request) -> Done:
        db, command = r.db, r.command
        event_id = command.require("id").lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", event_id):
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
                source="mail",
                title=command.get("title") or existing.title,
                starts=starts,
                ends=ends,
                all_day=all_day,
                status=EventStatus.CONFIRMED,
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

    @handles("cancel_event")
    def _do_cancel_event(self, r: Request) -> Done:
        db, command = r.db, r.command
        event = get_event(db, command.require("id").lower())
        if event is None:
            raise CommandError("unknown_event", id=command.get("id"))
        save_event(db, replace(event, status=EventStatus.CANCELLED, source="mail"))
        return Done("cancelled", {"event": event.as_context(self.config.timezone)})

    @handles("attendance")
    def _do_attendance(self, r: Request) -> Done:
        """An event's headcount: that ``id``'s, or the next event's that was announced."""
        from ..programme.attendance import headcount, next_announced

        event_id = r.command.get("id").lower()
        event = get_event(r.db, event_id) if event_id else next_announced(r.db, r.now)
        if event is None:
            raise CommandError("unknown_event" if event_id else "no_event", id=event_id)
        tz = self.config.timezone
        data = {"event": event.as_context(tz), "attendance": headcount(r.db, event, tz)}
        return Done("attendance", data)

    @handles("skip")
    def _do_skip(self, r: Request) -> Done:
        db, command, sender, now = r.db, r.command, r.sender, r.now
        workflow = self._main_workflow(command)
        occurrence = self._occurrence(workflow, command, now)
        started = schedule.started(db, workflow.name, occurrence)
        reason = command.get("reason") or f"asked by {sender}"
        schedule.skip_occurrence(db, workflow.name, occurrence, reason, now)
        data = {"workflow": workflow.title, "week": occurrence, "started": started}
        return Done("skipped", data)

    @handles("announce")
    def _do_announce(self, r: Request) -> Done:
        db, command, message, sender, now = r.db, r.command, r.message, r.sender, r.now
        text = command.get("text") or command.text
        if not text:
            raise CommandError("missing_key", key="text")
        workflow = self._main_workflow(command)
        desk.announce(db, workflow.name, text, sender, message, now)
        return Done("announced", {"workflow": workflow.title, "text": text})

    @handles("missing")
    def _do_missing(self, r: Request) -> Done:
        db, command, now = r.db, r.command, r.now
        workflow = self._main_workflow(command)
        occurrence = self._occurrence(workflow, command, now)
        occ = Occurrence(workflow, occurrence, day_of(workflow.schedule, occurrence))
        roster = stored_roster(db)
        # Who was asked (the request's recipients), or who will be: never a reminder's.
        language = workflow.language or self.config.language
        opening = workflow.opening
        asked = outgoing.asked(db, workflow.name, occurrence) or [
            r.id for r in respondents(roster, occ, opening.to if opening else "each_defi", language)
        ]
        done = inbound.answered(db, workflow.name, occurrence)
        people_away = away_on(db, occ.day)
        waiting = [r for r in asked if r not in done]
        until = {r: away_until(db, r, people_away) for r in waiting}
        data = {
            "workflow": workflow.title,
            "week": occurrence,
            "missing": [respondent_info(roster, r)["name"] for r in waiting if not until[r]],
            "away": [{"name": respondent_info(roster, r)["name"], "until": until[r]}
                     for r in waiting if until[r]],
            "answered": len(asked) - len(waiting),
            "asked": len(asked),
        }  # fmt: skip
        return Done("listed", data)

    @handles("resend")
    def _do_resend(self, r: Request) -> Done:
        """The digest as it went out (the last one, or that week's), sent again as it was.

        A snapshot, not a rebuild: what was announced or answered after it went out stays
        for the next digest. A week whose digest has not gone out is refused.
        """
        db, command, message, now = r.db, r.command, r.message, r.now
        workflow = self._main_workflow(command)
        step = next(iter(digest_steps(workflow)), None)
        if step is None:
            raise CommandError("no_digest", workflow=workflow.name)
        to = self._resend_to(command, r.sender)
        week = self._occurrence(workflow, command, now) if command.get("week") else None
        sent = sent_digest(db, workflow.name, step.id, week)
        if sent is None:
            last = sent_digest(db, workflow.name, step.id, None)
            code = "not_sent" if week else "none_sent"
            raise CommandError(code, week=week or "", last=last.occurrence if last else "")
        context = {"original": {"subject": sent.subject, "sent_at": sent.sent_at}}
        token = tokens.Token(workflow.name, sent.occurrence, f"resend{message}", "staff")
        key = f"{workflow.name}:{sent.occurrence}:resend{message}:{to}"
        mail = self.mailer.compose(token, [to], "commands/resend", self.config.language, context,
                                   now, original=sent.raw, key=key)  # fmt: skip
        sent_at = sent.sent_at.astimezone(self.config.timezone)
        data = {"workflow": workflow.title, "week": sent.occurrence, "to": to, "sent_at": sent_at}
        return Done("resent", data, (mail,))

    def _resend_to(self, command: Command, sender: str) -> str:
        target = command.get("recipient")
        if not target:
            return sender
        if self.vocabulary.value(target, ("cohort",)):
            return self.config.addresses.cohort
        if "@" in target:
            return target.strip("<> ").lower()
        words = ", ".join(self.vocabulary.values.get("cohort", ())[:1])
        raise CommandError("bad_value", key="recipient", value=target, choices=words)

    @handles("handled")
    def _do_handled(self, r: Request) -> Done:
        db, command, parsed, sender, now = r.db, r.command, r.parsed, r.sender, r.now
        who = command.get("sender").strip("<> ").lower()
        requests = desk.waiting_requests(db, parsed.thread_ids)
        if who:
            requests += desk.waiting_from(db, who)
        if not requests:
            raise CommandError("nothing_waiting", sender=who)
        desk.settle_requests(db, requests, sender, now)
        return Done("settled", {"count": len(requests), "sender": who})

    @handles("reactivate")
    def _do_reactivate(self, r: Request) -> Done:
        """Mail a suppressed address again (the staff checked or corrected it)."""
        value = r.command.get("address") or r.command.text
        if not value:
            raise CommandError("missing_key", key="address")
        found = _EMAIL.findall(value)
        if len(found) != 1:
            raise CommandError("bad_address", value=value.strip()[:200])
        address = found[0].lower()
        lifted = outgoing.lift(r.db, address)
        if lifted is None:
            raise CommandError("not_suppressed", address=address)
        since = lifted.since.astimezone(self.config.timezone)
        data = {"address": address, "reason": lifted.reason, "code": lifted.code, "since": since}
        return Done("reactivated", data)

    @handles("help")
    def _do_help(self, r: Request) -> Done:
        return Done("help", {})
