"""``mailflow demo``: a whole Friday of the weekly retrospective, on real loopback servers.

Starts Dovecot and the SMTP server, writes a config and the sample roster of fictional
défis into a folder, then lives the day as the daemon would: a tick at each step's time
and whenever someone writes. The requests go out, members reply as Gmail, Outlook,
Thunderbird and an iPhone would (and an out-of-office answers), the défis that have not
answered are reminded, and the digest is read back from the cohort's mailbox.

The demo tells the staff what happens in their language, from templates in
``templates/demo/`` given facts read from the database (``narration``). Faults planted on
purpose (``defaults/demo.toml``) are announced before they happen. The folder is left
behind with its database, so that the staff's read-only commands can look at the day.
"""

from __future__ import annotations

import datetime as dt
import email
import email.parser
import email.utils
import logging
import secrets
import shlex
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ..config import load_config
from ..errors import LocalMailError, MailflowError, TemplateError
from ..localmail import PASSWORD, LocalMail, clients
from ..programme.absences import away_on, away_until
from ..programme.occurrences import due_at, occurrence_day, occurrence_id
from ..programme.roster import Roster, load_roster
from ..programme.workflow import digest_steps
from ..receiving.mime import body_text, decode_header
from ..running.engine import Engine, TickReport
from ..sending.render import Renderer
from ..store import outgoing
from ..store.states import Respondent, Run
from . import narration
from .reports import find_workflow, status

_ADDRESSES = tomllib.loads(resources.files("mailflow").joinpath("defaults/demo.toml").read_text())[
    "addresses"
]
SHARED, ALIAS, COHORT = _ADDRESSES["shared"], _ADDRESSES["alias"], _ADDRESSES["cohort"]

# The loopback SMTP server stands for the programme's MX: it adds Authentication-Results.
DEMO_SETTINGS = """[events]
planning = "planning.toml"

[security]
trusted_authserv_ids = ["localmail.test"]
"""

FAULT_KINDS = ("unknown_address",)
# The commands that read the database alone: they work once the demo's servers are gone.
OFFLINE_COMMANDS = ("status", "digest", "export", "roster")
STAFF_KINDS = ("failure_notice", "notice", "staff_digest", "command_reply", "help")

Say = Callable[[str], None]
_HEADERS = email.parser.BytesHeaderParser()


def _authenticate(mail_from: str, rcpt_tos: list[str], data: bytes) -> bytes:
    """What the programme's MX does: record that the sender's domain authenticated."""
    domain = mail_from.rsplit("@", 1)[-1]
    header = (
        f"Authentication-Results: localmail.test; spf=pass smtp.mailfrom={mail_from};"
        f" dkim=pass header.d={domain}\r\n"
    )
    return header.encode() + data if mail_from else data


def next_friday(today: dt.date) -> dt.date:
    return today + dt.timedelta(days=(4 - today.weekday()) % 7)


def _defaults(name: str) -> str:
    return resources.files("mailflow").joinpath(f"defaults/{name}").read_text()


@dataclass(frozen=True)
class Scenario:
    """What people do during the demo, and the faults planted on purpose."""

    replies: list[dict[str, Any]]
    commands: list[dict[str, Any]]
    faults: list[dict[str, Any]]

    @classmethod
    def load(cls, roster: Roster) -> Scenario:
        data = tomllib.loads(_defaults("demo.toml"))
        scenario = cls(data.get("reply", []), data.get("command", []), data.get("fault", []))
        listed = {m.address.lower() for d in roster.defis for m in d.members}
        for fault in scenario.faults:
            if (
                fault.get("kind") not in FAULT_KINDS
                or fault.get("address", "").lower() not in listed
            ):
                raise MailflowError(f"demo.toml: fault {fault!r} is not an address of the roster")
        return scenario

    @property
    def planted(self) -> set[str]:
        """The addresses that have no mailbox on purpose."""
        return {f["address"].lower() for f in self.faults if f["kind"] == "unknown_address"}


class Narrator:
    """Renders ``templates/demo/NAME.LANG.txt.j2`` and hands the text to ``say``."""

    def __init__(self, renderer: Renderer, language: str, say: Say) -> None:
        self.renderer, self.language, self.say = renderer, language, say

    def text(self, name: str, context: dict[str, Any]) -> str:
        context = {"language": self.language, **context}
        # Every name any branch reads must be given, not only those this run reaches.
        self.renderer.undeclared(f"demo/{name}", self.language, context)
        path = f"demo/{name}.{self.language}.txt.j2"
        try:
            return self.renderer.env.get_template(path).render(**context)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {path} not found") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"template {path}: {e}") from None

    def tell(self, name: str, **context: Any) -> None:
        text = self.text(name, context).removesuffix("\n")
        if text.strip():
            self.say(text)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """mailflow's log lines (and others' warnings) go to a file: the narration tells them."""
    root, own = logging.getLogger(), logging.getLogger("mailflow")
    saved = root.handlers[:], root.level, own.level
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers, root.level, own.level = [handler], logging.WARNING, logging.INFO
    try:
        yield
    finally:
        root.handlers, root.level, own.level = saved
        handler.close()


def run_demo(
    folder: Path, friday: dt.date, say: Say = print, *, language: str = "fr",
    program: str = "mailflow",
) -> str:  # fmt: skip
    """Play the Friday of ``friday``'s week; returns the digest's text as the cohort got it.

    ``language`` is the demo config's ``[mailflow] language``: the narration's and the
    mail's. ``program`` is how the closing lines name the ``mailflow`` command.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("mailflow.db*"):
        stale.unlink()
    (folder / "roster.toml").write_text(_defaults("roster.toml"))
    roster = load_roster(folder / "roster.toml")
    scenario = Scenario.load(roster)
    config_path = folder / "mailflow.toml"
    with _log_to(folder / "mailflow.log"), LocalMail() as servers:
        servers.smtp.handler.header_hook = _authenticate
        for address in (SHARED, ALIAS, COHORT, *(s.address for s in roster.staff)):
            servers.add_user(address)
        for defi in roster.defis:
            for member in defi.members:
                if member.address.lower() not in scenario.planted:
                    servers.add_user(member.address)
        body = servers.config_text(
            shared=SHARED, alias=ALIAS, cohort=COHORT, extra=DEMO_SETTINGS,
            mailflow=f'language = "{language}"\ndatabase = "mailflow.db"\n'
            'roster = "roster.toml"\ntimezone = "Europe/Paris"',
        )  # fmt: skip
        config_path.write_text(body)
        # No secret is passed: the database keeps the one it makes, which the staff's
        # commands find again afterwards.
        config = load_config(config_path, {"MAILFLOW_IMAP_PASSWORD": PASSWORD})
        narrator = Narrator(Renderer(config.templates_dir, config.timezone), language, say)
        engine = Engine(config)
        try:
            play = _Play(engine, servers, scenario, narrator, roster, folder, friday)
            commands = _commands(program, folder, play.occurrence)
            config_path.write_text(narrator.text("config", {"commands": commands}) + body)
            _write_planning(folder, play.day)
            closing = play.run()
        finally:
            engine.db.conn.close()
    narrator.tell("close", commands=commands, folder=f"{folder}/", **closing)
    return str(closing["digest"]["text"])


def _write_planning(folder: Path, day: dt.date) -> None:
    # A collective session a week later, so that its invitation goes out during the demo.
    session_day = (day + dt.timedelta(days=7)).isoformat()
    (folder / "planning.toml").write_text(
        _defaults("planning.toml").replace("{session_day}", session_day)
    )


def _commands(program: str, folder: Path, occurrence: str) -> list[dict[str, str]]:
    """The read-only commands the closing lines and the config's comment give."""
    base = f"{program} -c {shlex.quote(str(folder / 'mailflow.toml'))}"
    lines = {"status": f"status --week {occurrence}",
             "digest": f"digest --preview --week {occurrence}",
             "export": "export", "roster": "roster"}  # fmt: skip
    return [{"name": name, "line": f"{base} {lines[name]}"} for name in OFFLINE_COMMANDS]


class _Play:
    """The day itself: people's actions and the engine's ticks, told as they happen."""

    def __init__(
        self, engine: Engine, servers: LocalMail, scenario: Scenario, narrator: Narrator,
        roster: Roster, folder: Path, friday: dt.date,
    ) -> None:  # fmt: skip
        self.engine, self.servers, self.narrator = engine, servers, narrator
        self.scenario, self.roster, self.folder = scenario, roster, folder
        self.people = narration.People.of(roster, scenario.planted, COHORT)
        self.steps = {(w.name, s.id): s for w in engine.workflows for s in w.steps}
        self.workflow = find_workflow(engine, None)
        self.occurrence = occurrence_id(self.workflow.schedule, friday)
        day = occurrence_day(self.workflow.schedule, self.occurrence)
        if day is None:
            raise MailflowError(f"{self.occurrence} has no retrospective (holiday or skipped week)")
        self.day = day

    def run(self) -> dict[str, Any]:
        """Tell the day; returns what the closing lines need."""
        engine, workflow, day = self.engine, self.workflow, self.day
        tz = engine.config.timezone
        due = {s.id: due_at(s, day, tz, workflow.schedule) for s in workflow.steps}
        actions = self._actions(due)
        deadline = (
            dt.datetime.combine(day, workflow.deadline, tzinfo=tz) if workflow.deadline else None
        )
        self._intro(due, deadline)
        # As the daemon would: a tick whenever something is due, and whenever mail arrives.
        planned = [*(a[0] for a in actions), *([deadline] if deadline else [])]
        end = max([*due.values(), *planned])
        cursor = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
        while (instant := self._after(cursor, planned)) is not None and instant <= end:
            done = [self._act(kind, item, at) for at, kind, item in actions if at == instant]
            report = engine.tick(instant)
            self._moment(instant, done, report, instant == deadline)
            cursor = instant
        return {**self._answered(), "digest": self._digest()}

    def _after(self, cursor: dt.datetime, planned: list[dt.datetime]) -> dt.datetime | None:
        """The next instant after ``cursor`` when the engine or someone has something to do."""
        found = [self.engine.next_due(cursor), *(at for at in planned if at > cursor)]
        return min((at for at in found if at is not None), default=None)

    def _actions(self, due: dict[str, dt.datetime]) -> list[tuple[dt.datetime, str, Any]]:
        found = []
        for kind, items in (("reply", self.scenario.replies), ("command", self.scenario.commands)):
            for item in items:
                if item["after"] not in due:
                    raise MailflowError(f"demo.toml: no step {item['after']!r} in the workflow")
                at = due[item["after"]] + dt.timedelta(minutes=item.get("minutes", 20))
                found.append((at, kind, item))
        return sorted(found, key=lambda a: a[0])

    def _intro(self, due: dict[str, dt.datetime], deadline: dt.datetime | None) -> None:
        tz, day = self.engine.config.timezone, self.day
        # What happens when, in the order of the day: each kind of mail once, with its times.
        plan: dict[str, list[dt.datetime]] = {}
        moments = [
            (at, narration.kind_of(self.workflow.name, s, self.steps)) for s, at in due.items()
        ]
        if deadline is not None:
            moments.append((deadline, "deadline"))
        for at, kind in sorted(moments):
            plan.setdefault(kind, []).append(at)
        absent = [
            {**self.people.person(self._member(r).address), "defi": self._defi(r).name}
            for r in self.scenario.replies if r.get("kind") == "out_of_office"
        ]  # fmt: skip
        self.narrator.tell(
            "intro", day=day, week=day.isocalendar().week, city=tz.key.rsplit("/", 1)[-1],
            alias=ALIAS, cohort=COHORT,
            defis=[{"name": d.name, "host": d.host, "people": len(d.members)}
                   for d in self.roster.defis],
            people=sum(len(d.members) for d in self.roster.defis),
            staff=[{"name": s.name, "role": s.role} for s in self.roster.staff],
            faults=[{"kind": f["kind"], "person": self.people.person(f["address"])}
                    for f in self.scenario.faults],
            absent=absent, plan=[{"kind": k, "times": v} for k, v in plan.items()],
            clients=list(dict.fromkeys(r["client"].removesuffix("-inline")
                                       for r in self.scenario.replies if "client" in r)),
        )  # fmt: skip

    def _defi(self, reply: dict[str, Any]) -> Any:
        return next(d for d in self.roster.defis if d.id == reply["defi"])

    def _member(self, reply: dict[str, Any]) -> Any:
        return self._defi(reply).members[reply.get("member", 0)]

    def _act(self, kind: str, item: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
        return self._reply(item, at) if kind == "reply" else self._command(item, at)

    def _reply(self, reply: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
        """A member answers the mail of the step ``after``, as their mail client would."""
        defi, member = self._defi(reply), self._member(reply)
        asked = self._message_id(reply["after"], Respondent.defi(defi.id))
        request = self._received(member.address, asked)
        if reply.get("kind") == "out_of_office":
            raw = clients.out_of_office(request, member.address, member.name, date=when)
            client = ""
        else:
            kwargs: dict[str, Any] = {"lang": reply.get("lang", "fr"), "date": when}
            if "inline" in reply:
                kwargs["inline"] = self._under_headings(request, reply["inline"])
            raw = clients.reply(
                reply["client"], request, member.address, member.name, reply.get("body", ""),
                **kwargs,
            )  # fmt: skip
            client = reply["client"].removesuffix("-inline")
        self.servers.send(raw, [SHARED], member.address)
        return {
            "kind": reply.get("kind", "reply"), "person": self.people.person(member.address),
            "defi": defi.name, "client": client, "inline": "inline" in reply,
            "step": narration.kind_of(self.workflow.name, reply["after"], self.steps),
        }  # fmt: skip

    def _under_headings(self, request: bytes, answers: dict[str, str]) -> dict[str, str]:
        """Answers by section key, keyed by the request's own heading lines (its language)."""
        spec = self.workflow.collect
        found = {}
        for line in body_text(email.message_from_bytes(request)).text.split("\n"):
            match = spec.match(line) if spec is not None else None
            if match is not None and match.key in answers and not match.rest:
                found[line.strip()] = answers[match.key]
        return found

    def _command(self, command: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
        """A staff member writes to the alias."""
        staff = self.roster.staff[0]
        raw = (
            f"From: {staff.name} <{staff.address}>\r\nTo: {ALIAS}\r\n"
            f"Subject: {command['subject']}\r\nDate: {email.utils.format_datetime(when)}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@programme.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + command["body"].replace("\n", "\r\n")
            + "\r\n"
        ).encode()
        self.servers.send(raw, [SHARED], staff.address)
        return {
            "kind": "command", "person": self.people.person(staff.address), "defi": "",
            "subject": command["subject"], "alias": ALIAS,
        }  # fmt: skip

    def _message_id(self, step: str, recipient: str) -> str:
        """The Message-ID of the mail the workflow's ``step`` wrote to ``recipient``."""
        found = outgoing.message_id_of(
            self.engine.db, self.workflow.name, self.occurrence, step, recipient
        )
        if found is None:
            raise MailflowError(f"demo: the step {step!r} wrote no mail to {recipient}")
        return found

    def _received(self, address: str, message_id: str, timeout: float = 10.0) -> bytes:
        """The message ``message_id`` as it is in ``address``'s mailbox (waited for)."""
        deadline = time.monotonic() + timeout
        while True:
            for raw in reversed(self.servers.fetch(address)):
                if str(_HEADERS.parsebytes(raw).get("Message-ID", "")).strip() == message_id:
                    return raw
            if time.monotonic() > deadline:
                raise LocalMailError(f"{message_id} did not reach {address} in {timeout:.0f} s")
            time.sleep(0.05)

    def _moment(
        self, instant: dt.datetime, done: list[dict[str, Any]], report: TickReport,
        deadline: bool,
    ) -> None:  # fmt: skip
        """Tell one instant: what people did, what mailflow read, wrote and sent."""
        engine, tz = self.engine, self.engine.config.timezone
        groups = narration.mails(engine.db, instant, self.people, engine.workflows, tz)
        for group in groups:
            if group["kind"] in STAFF_KINDS:
                group["arrived"] = self._arrived(group)
        kinds = {g["kind"] for g in groups}
        idle = [
            {"kind": kind, "held": run.status == Run.HELD}
            for run in report.steps
            if run.queued == 0
            and (kind := narration.kind_of(run.workflow, run.step, self.steps)) not in kinds
        ]
        self.narrator.tell(
            "moment", time=instant.astimezone(tz), actions=done,
            read=narration.read(engine.db, instant, self.people, engine.workflows),
            groups=groups,
            totals=narration.totals(groups), idle=idle, errors=report.errors,
            deadline=self._answered() if deadline else None, log=str(self.folder / "mailflow.log"),
        )  # fmt: skip

    def _arrived(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        """Each staff mail as its recipients find it in their mailbox: its subject, who has it."""
        found = []
        for message in group["messages"]:
            people = []
            subject = ""
            for address in message["to"]:
                raw = self._received(address, message["message_id"])
                subject = decode_header(email.message_from_bytes(raw).get("Subject", ""))
                people.append(self.people.person(address))
            found.append({"subject": subject, "people": people})
        return found

    def _answered(self) -> dict[str, Any]:
        """Who answered, who is away (all its people: not reminded), and who gave no news."""
        current = status(self.engine, self.workflow, self.occurrence)
        people_away = away_on(self.engine.db, self.day)
        waiting = [d for d in current.respondents if not d.answered_at]
        away = [d for d in waiting if away_until(self.engine.db, d.id, people_away)]
        return {
            "answered": [d.name for d in current.respondents if d.answered_at],
            "away": [d.name for d in away],
            "silent": [d.name for d in waiting if d not in away],
        }

    def _digest(self) -> dict[str, str]:
        """The digest as the cohort's mailbox received it."""
        digest = next(s.id for s in digest_steps(self.workflow) if s.to == "cohort")
        raw = self._received(COHORT, self._message_id(digest, "cohort"))
        message = email.message_from_bytes(raw)
        return {"subject": decode_header(message.get("Subject", "")),
                "text": body_text(message).text}  # fmt: skip
