"""``mailflow demo``: a whole Friday of the weekly retrospective, on real loopback servers.

Starts Dovecot and the SMTP server, writes a config and the sample roster of fictional
défis into a folder, then ticks through the day at each step's time: the requests go
out, members reply as Gmail, Outlook, Thunderbird and an iPhone would (and an
out-of-office answers), the défis that have not answered are reminded, and the digest is
read back from the cohort's mailbox, as a member of the cohort would read it.
"""

from __future__ import annotations

import datetime as dt
import email
import secrets
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .config import load_config
from .engine import Engine
from .localmail import PASSWORD, LocalMail, clients
from .mime import body_text
from .occurrences import due_at, occurrence_day, occurrence_id
from .reports import find_workflow, status
from .roster import load_roster

SHARED, ALIAS, COHORT = "mailflow@programme.test", "equipe@programme.test", "promo@programme.test"

# The loopback SMTP server stands for the programme's MX: it adds Authentication-Results.
DEMO_SETTINGS = """[events]
planning = "planning.toml"

[security]
trusted_authserv_ids = ["localmail.test"]
"""


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


def run_demo(folder: Path, friday: dt.date, say: Callable[[str], None] = print) -> str:
    """Play the Friday of ``friday``'s week; returns the digest's text as the cohort got it."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("mailflow.db*"):
        stale.unlink()
    (folder / "roster.toml").write_text(_defaults("roster.toml"))
    session_day = (friday + dt.timedelta(days=7)).isoformat()
    (folder / "planning.toml").write_text(
        _defaults("planning.toml").replace("{session_day}", session_day)
    )
    roster = load_roster(folder / "roster.toml")
    with LocalMail() as servers:
        servers.smtp.handler.header_hook = _authenticate
        for address in (SHARED, ALIAS, COHORT, *(s.address for s in roster.staff)):
            servers.add_user(address)
        for defi in roster.defis:
            for member in defi.members:
                if not member.address.startswith("ancien."):  # left the programme: refused
                    servers.add_user(member.address)
        (folder / "mailflow.toml").write_text(
            "# Written by `mailflow demo`: the loopback servers it started (now stopped).\n"
            + servers.config_text(
                shared=SHARED, alias=ALIAS, cohort=COHORT, extra=DEMO_SETTINGS,
                mailflow='database = "mailflow.db"\nroster = "roster.toml"\n'
                'timezone = "Europe/Paris"',
            )
        )  # fmt: skip
        env = {"MAILFLOW_IMAP_PASSWORD": PASSWORD, "MAILFLOW_SECRET": secrets.token_hex(16)}
        engine = Engine(load_config(folder / "mailflow.toml", env))
        return _play(engine, servers, friday, say)


def _play(engine: Engine, servers: LocalMail, friday: dt.date, say: Callable[[str], None]) -> str:
    workflow = find_workflow(engine, None)
    tz = engine.config.timezone
    occurrence = occurrence_id(workflow.schedule, friday)
    day = occurrence_day(workflow.schedule, occurrence)
    if day is None:
        raise SystemExit(f"{occurrence} has no retrospective (holiday or skipped week)")
    say(f"A simulated {workflow.title.lower()} on {day:%A %d %B %Y} ({occurrence}), {tz.key} time")
    scenario = tomllib.loads(_defaults("demo.toml"))
    replies, commands = scenario["reply"], scenario.get("command", [])
    roster = (
        {d.id: d for d in load_roster(engine.config.roster).defis} if engine.config.roster else {}
    )
    instants = sorted({due_at(s, day, tz, workflow.schedule) for s in workflow.steps})
    if workflow.deadline:
        instants = sorted({*instants, dt.datetime.combine(day, workflow.deadline, tzinfo=tz)})
    by_time = {due_at(s, day, tz, workflow.schedule): s.id for s in workflow.steps}
    for instant in instants:
        report = engine.tick(instant)
        say(f"\n{instant:%H:%M} tick")
        if report.inbound and report.inbound.handled:
            say("  read " + ", ".join(f"{n} {k}" for k, n in report.inbound.kinds.items()))
        for run in report.steps:
            say(f"  {run.step}: {run.status}, {run.queued} mails queued {run.note}".rstrip())
        if report.delivery:
            refused = (
                f", refused: {', '.join(report.delivery.refused)}"
                if report.delivery.refused
                else ""
            )
            say(f"  sent {report.delivery.sent}{refused}")
        for reply in replies:
            if reply["after"] == by_time.get(instant):
                _reply(servers, roster[reply["defi"]], reply, instant, say)
        for command in commands:
            if command["after"] == by_time.get(instant):
                _command(servers, engine, command, say)
    say("")
    current = status(engine, workflow, occurrence)
    for d in current.respondents:
        say(f"  [{'x' if d.answered_at else ' '}] {d.name}")
    digests = servers.wait_for(COHORT, 1)
    text = body_text(email.message_from_bytes(digests[-1])).text
    say(f"\nThe digest, as {COHORT} received it:\n")
    say(text)
    return text


def _command(
    servers: LocalMail, engine: Engine, command: dict[str, Any], say: Callable[[str], None]
) -> None:
    staff = load_roster(engine.config.roster).staff[0] if engine.config.roster else None
    assert staff is not None
    raw = (
        f"From: {staff.name} <{staff.address}>\r\nTo: {ALIAS}\r\nSubject: {command['subject']}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@programme.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + command["body"].replace("\n", "\r\n")
        + "\r\n"
    ).encode()
    servers.send(raw, [SHARED], staff.address)
    say(f"  {staff.name} (staff) writes to the alias: « {command['subject']} »")


def _reply(
    servers: LocalMail,
    defi: Any,
    reply: dict[str, Any],
    after: dt.datetime,
    say: Callable[[str], None],
) -> None:
    member = defi.members[reply.get("member", 0)]
    request = servers.wait_for(member.address, 1)[-1]
    when = after + dt.timedelta(minutes=20)
    if reply.get("kind") == "out_of_office":
        raw = clients.out_of_office(request, member.address, member.name, date=when)
        what = "an out-of-office reply"
    else:
        kwargs: dict[str, Any] = {"lang": reply.get("lang", "fr"), "date": when}
        if "inline" in reply:
            kwargs["inline"] = reply["inline"]
        raw = clients.reply(
            reply["client"], request, member.address, member.name, reply.get("body", ""), **kwargs
        )
        what = f"a reply from {reply['client']}"
    servers.send(raw, [SHARED], member.address)
    say(f"  {member.name} ({defi.name}) sends {what}")
