"""The preflight: every mail mailflow can send, rendered once before anything runs.

At start-up (``run``, ``tick``, ``doctor``) and when workflows are reloaded, each template
in use is rendered in each language in use, through the same functions that build real
mail, on a scratch database holding a sample programme: défis that answered every section
and field, one that did not, a late answer, a flag, an announcement, an event, a help
request, a notice of each kind, and a command of each verb. A variable a template uses but
is not given, in any branch, is a ``TemplateError`` naming the template and the variable,
so that a broken template stops mailflow at start-up, not a Friday at 15:00.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..programme.events import Event, save_event
from ..programme.occurrences import due_at, nominal_day, occurrence_day, occurrence_id
from ..programme.receipts import Answer, PresenceNote, acknowledgement, presence_confirmation
from ..programme.roster import Defi, Member, Mentor, Roster, Staff, sync_roster
from ..programme.steps import Occurrence, Skip, change_mails, step_mails
from ..programme.workflow import Workflow, digest_steps
from ..receiving.commands import Command, Executor, Request
from ..receiving.parse import ParsedMessage
from ..receiving.presence import Statement
from ..sending import notices
from ..sending.compose import Mailer
from ..sending.failures import report_failures
from ..sending.render import Renderer
from ..store import inbound, mailbox, outgoing, schedule
from ..store.db import Database, iso, open_db
from ..store.desk import add_flag, add_help_request, announce
from ..store.outgoing import Outgoing
from ..store.states import (
    Change,
    Delivery,
    Failure,
    Flag,
    Kind,
    Parsing,
    Respondent,
    Run,
    Sending,
    Status,
    Suppressed,
)

if TYPE_CHECKING:
    from .engine import Engine

SAMPLE = "sample"  # every sample text: never sent, only rendered
STAFF = f"staff@{SAMPLE}.test"
ANSWERER = Respondent.defi("answered")  # the sample défi that answers every section


class AuditingRenderer(Renderer):
    """A renderer that also rejects templates using names their context lacks.

    It shares the engine's compiled templates, so the real mail later renders from them.
    """

    def __init__(self, renderer: Renderer) -> None:
        self.__dict__.update(renderer.__dict__)
        self.rendered: dict[str, str] = {}  # "retro/request.fr": its text, as first rendered

    def render(self, name: str, language: str, context: dict[str, Any]) -> Any:
        self.undeclared(name, language, context)
        result = super().render(name, language, context)
        self.rendered.setdefault(f"{name}.{language}", result.text)
        return result


_passed: set[tuple[object, ...]] = set()


def check(engine: Engine, languages: set[str], *, cached: bool = True) -> dict[str, str]:
    """Render every mail of ``engine``'s workflows in each language; returns each template's
    text as rendered (``retro/request.fr``: …).

    Raises ``TemplateError`` for the first template that does not render. Files that
    passed unchanged are not checked again by the same process (a daemon's reloads, a test
    suite's many engines) unless ``cached`` is false; nothing is returned then.
    """
    stamp = _stamp(engine, languages)
    if cached and stamp in _passed:
        return {}
    renderer = AuditingRenderer(engine.renderer)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for language in sorted(languages):
        with _scratch(engine, language, now) as db:
            _render_all(engine, renderer, db, language, now)
    _passed.add(stamp)
    return renderer.rendered


def _stamp(engine: Engine, languages: set[str]) -> tuple[object, ...]:
    files = [
        *engine.config.templates_dir.rglob("*.j2"),
        *engine.config.templates_dir.glob("*.toml"),
        *engine.config.workflows_dir.glob("*.toml"),
    ]
    state = sorted((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return (tuple(state), tuple(sorted(languages)), engine.config.timezone.key)


@contextmanager
def _scratch(engine: Engine, language: str, now: dt.datetime) -> Iterator[Database]:
    db = open_db(":memory:")
    try:
        sync_roster(db, _roster(language))
        yield db
    finally:
        db.conn.close()


def _roster(language: str) -> Roster:
    def defi(name: str) -> Defi:
        members = (Member(f"{name}.a@{SAMPLE}.test", "Ada Sample"), Member(f"{name}.b@x.test"))
        return Defi(name, name.capitalize(), SAMPLE, members, language)

    staff = (Staff(STAFF, "Sam Sample", SAMPLE), Staff(f"silent@{SAMPLE}.test"))
    mentors = (Mentor(f"mentor@{SAMPLE}.test", "Max Sample", ("answered",)),)
    return Roster((defi("answered"), defi("silent")), staff, mentors)


def _config_for(engine: Engine, language: str) -> Any:
    from dataclasses import replace

    return replace(engine.config, language=language)


def _render_all(
    engine: Engine, renderer: Renderer, db: Database, language: str,
    now: dt.datetime,
) -> None:  # fmt: skip
    config = _config_for(engine, language)
    tz = config.timezone
    mailer = Mailer(config, renderer, engine.secret)
    event = _event(db, config, now)
    message = _message(db, now)
    workflows = [_in(w, language) for w in engine.workflows]
    _shared(db, workflows, message, now)
    for workflow in workflows:
        occ = _occurrence(workflow, event, tz, now)
        _answers(db, workflow, occ, message, now)
        for step in workflow.steps:
            due = due_at(step, occ.day, tz, workflow.schedule)
            for late in (False, True):
                step_mails(db, mailer, occ, step, due, due, late)
        if workflow.acknowledge:
            for late, early in ((False, False), (True, False), (False, True)):
                answer = Answer(
                    workflow, occ.id, ANSWERER, f"answered.a@{SAMPLE}.test", "Ada Sample",
                    message, _answer_data(workflow), late, early=early,
                )  # fmt: skip
                acknowledgement(db, mailer, answer, now)
        if workflow.update_template or workflow.cancel_template:
            _changes(db, mailer, workflow, occ, event, now)
    _presence(db, mailer, message, now)
    _notices(db, mailer, workflows, now)
    _failures(db, mailer, now)
    _commands(engine, mailer, db, message, workflows, now)


def _presence(db: Database, mailer: Mailer, message: int, now: dt.datetime) -> None:
    """The confirmations of an absence, of a return, and the question for the days."""
    day = now.date()
    for said in (
        Statement("away", day + dt.timedelta(days=7), day), Statement("away", day),
        Statement("back"), Statement("unclear"),
    ):  # fmt: skip
        note = PresenceNote(f"answered.a@{SAMPLE}.test", "Ada Sample", message, ANSWERER, said)
        presence_confirmation(db, mailer, note, now)


def _in(workflow: Workflow, language: str) -> Workflow:
    """The workflow as a recipient of ``language`` gets it (a workflow may fix its own)."""
    from dataclasses import replace

    return replace(workflow, language=language) if workflow.language else workflow


def _event(db: Database, config: Any, now: dt.datetime) -> Event:
    tz = config.timezone
    day = (now + dt.timedelta(days=8)).astimezone(tz).date()
    starts = dt.datetime.combine(day, dt.time(9, 30), tzinfo=tz)
    event = Event(
        SAMPLE, f"{SAMPLE}@{SAMPLE}.test", "session", SAMPLE.capitalize(), starts,
        starts + dt.timedelta(hours=8), place=SAMPLE, theme=SAMPLE, agenda=SAMPLE,
    )  # fmt: skip
    save_event(db, event)
    return event


def _message(db: Database, now: dt.datetime) -> int:
    """A stored message for sample rows to refer to."""
    key = f"<{SAMPLE}{mailbox.message_counts(db)[0]}@{SAMPLE}.test>"
    mailbox.store_messages(db, [(key, None, "", 0, b"", 1, iso(now), Parsing.PARSED, None)])
    return mailbox.message_of(db, key)


def _occurrence(workflow: Workflow, event: Event, tz: Any, now: dt.datetime) -> Occurrence:
    if workflow.schedule.every == "event":
        return Occurrence(workflow, f"ev-{event.id}", event.local_day(tz), event)
    occurrence = occurrence_id(workflow.schedule, now.astimezone(tz).date())
    day = occurrence_day(workflow.schedule, occurrence) or nominal_day(
        workflow.schedule, occurrence
    )
    return Occurrence(workflow, occurrence, day)


def _answer_data(workflow: Workflow) -> dict[str, Any]:
    keys = workflow.collect
    sections = dict.fromkeys(keys.section_keys, SAMPLE) if keys else {}
    fields = dict.fromkeys(keys.field_keys, SAMPLE) if keys else {}
    return {"sections": sections, "fields": fields, "text": SAMPLE, "from_name": "Ada Sample"}


def _answers(
    db: Database, workflow: Workflow, occ: Occurrence, message: int,
    now: dt.datetime,
) -> None:  # fmt: skip
    """A request to every respondent, full answers but from one, a late one, a flag, help."""
    if workflow.collect is None:
        return
    staff = [Respondent.staff(STAFF), Respondent.staff(f"silent@{SAMPLE}.test")]
    for respondent in (ANSWERER, Respondent.defi("silent"), *staff):
        outgoing.queue(db, Outgoing(
            f"{workflow.name}:{occ.id}:request:{respondent}", workflow.name, occ.id, "request",
            respondent, (f"{SAMPLE}@{SAMPLE}.test",), SAMPLE, f"<{workflow.name}.{respondent}>",
            SAMPLE, b"",
        ), now)  # fmt: skip
    data = json.dumps(_answer_data(workflow))
    received = now - dt.timedelta(days=1)
    answers = [(occ.id, Status.COUNTED, ANSWERER), (occ.id, Status.COUNTED, staff[0]),
               (f"{occ.id}-before", Status.LATE, ANSWERER)]  # fmt: skip
    for occurrence, status, respondent in answers:
        inbound.record_verdict(db, _message(db, now), received, Kind.ANSWER, status,
                               f"answered.a@{SAMPLE}.test", workflow.name, occurrence, respondent,
                               "token", data)  # fmt: skip


def _shared(db: Database, workflows: list[Workflow], message: int, now: dt.datetime) -> None:
    """A flag, an announcement per workflow, and a help request waiting for a month."""
    received = now - dt.timedelta(days=1)
    add_flag(db, f"answered.b@{SAMPLE}.test", Flag.BOUNCE, SAMPLE, received)
    for workflow in workflows:
        announce(db, workflow.name, SAMPLE, STAFF, None, received)
    unread = json.dumps({"unreadable": SAMPLE, "error": SAMPLE})
    for kind, status in ((Kind.REPLY, Status.RECORDED), (Kind.UNKNOWN_SENDER, Status.RECORDED),
                         (Kind.ANSWER, Status.NON_MEMBER), (Kind.ANSWER, Status.AMBIGUOUS),
                         (Kind.UNREADABLE, Status.RECORDED),
                         (Kind.ERROR, Status.FAILED)):  # fmt: skip
        inbound.record_verdict(db, _message(db, now), received, kind, status, f"x@{SAMPLE}.test",
                               None, None, ANSWERER, None, unread)  # fmt: skip
    add_help_request(db, message, f"answered.a@{SAMPLE}.test", ANSWERER, SAMPLE,
                     f"<{SAMPLE}@{SAMPLE}.test>", now - dt.timedelta(days=30))  # fmt: skip


def _changes(
    db: Database, mailer: Mailer, workflow: Workflow,
    occ: Occurrence, event: Event, now: dt.datetime,
) -> None:  # fmt: skip
    schedule.record_run(db, workflow.name, occ.id, "announced", now, now, Run.DONE, "", "")
    for change in (Change.CHANGED, Change.CANCELLED):
        change_mails(db, mailer, workflow, event, change, SAMPLE, now)


def _notices(
    db: Database, mailer: Mailer, workflows: list[Workflow], now: dt.datetime,
) -> None:  # fmt: skip
    kinds = [(notices.Kind.HELD, Skip.BLIND), (notices.Kind.FAILED, Skip.FAILED),
             (notices.Kind.BLIND, "")]  # fmt: skip
    kinds += [(notices.Kind.SKIPPED, reason) for reason in
              (Skip.MISSED, Skip.NOT_ASKED, Skip.LATER_RAN, Skip.BLIND, Skip.FAILED)]  # fmt: skip
    for workflow in workflows:
        tz = mailer.config.timezone
        occurrence = occurrence_id(workflow.schedule, now.astimezone(tz).date()) if (
            workflow.schedule.every != "event"
        ) else f"ev-{SAMPLE}"  # fmt: skip
        for step in workflow.steps:
            for kind, reason in kinds:
                key = f"{kind}:{reason}:{workflow.name}:{step.id}"
                notice = notices.Notice(
                    key, kind, workflow.name, occurrence, step.id, reason, SAMPLE
                )
                notices.record(db, notice, now)
    notices.flush(db, mailer, workflows, now)


def _failures(db: Database, mailer: Mailer, now: dt.datetime) -> None:
    """A refused address, a bounced one, retries run out, a mail that reached nobody."""
    mail = Outgoing(
        "sample:failed", "retro", SAMPLE, "request", ANSWERER,
        (f"answered.a@{SAMPLE}.test", f"answered.b@{SAMPLE}.test"), SAMPLE, f"<f@{SAMPLE}>",
        SAMPLE, b"",
    )  # fmt: skip
    outgoing.queue(db, mail, now)
    row = outgoing.mail_id(db, mail.key)
    assert row is not None
    outgoing.suppress(db, f"answered.a@{SAMPLE}.test", Suppressed.REFUSED, now, code="550 5.1.1",
                      detail=SAMPLE, outbox=row)  # fmt: skip
    outgoing.suppress(db, f"silent.a@{SAMPLE}.test", Suppressed.BOUNCED, now, code="5.1.1")
    outgoing.record(db, row, f"answered.b@{SAMPLE}.test", Delivery.FAILED, now,
                    failure=Failure.EXHAUSTED, code=451, detail=SAMPLE)  # fmt: skip
    for failure, error in ((Failure.NO_RECIPIENT, ""), (Failure.REFUSED, f"554 5.7.1 {SAMPLE}")):
        outgoing.mark(db, row, Sending.FAILED, now, failure=failure, error=error)
        report_failures(db, mailer, now)
        outgoing.forget_reports(db, "system:failures:")


def _sent_digests(db: Database, workflows: list[Workflow], now: dt.datetime) -> None:
    """A digest that went out for each collecting workflow, for the resend command."""
    raw = b"From: s@sample.test\r\nSubject: sample\r\nMessage-ID: <d@sample.test>\r\n\r\nsample\r\n"
    for workflow in workflows:
        step = next(iter(digest_steps(workflow)), None)
        if workflow.collect is None or step is None:
            continue
        mail = Outgoing(
            f"sample:digest:{workflow.name}", workflow.name, SAMPLE, step.id, "cohort",
            (f"cohort@{SAMPLE}.test",), SAMPLE, f"<digest.{workflow.name}@{SAMPLE}>", SAMPLE, raw,
        )  # fmt: skip
        outgoing.queue(db, mail, now)
        sent = outgoing.mail_id(db, mail.key)
        assert sent is not None
        outgoing.mark(db, sent, Sending.SENT, now)


_COMMANDS = [
    ("help", {}, ""),
    ("missing", {}, ""),
    ("announce", {}, SAMPLE),
    ("skip", {"reason": SAMPLE}, ""),
    ("resend", {}, ""),
    (
        "event",
        {
            "id": "made",
            "title": SAMPLE,
            "date": "2027-01-15",
            "start": "9h30",
            "end": "17h",
            "place": SAMPLE,
        },
        "",
    ),
    ("event", {"id": "made", "place": f"{SAMPLE} 2"}, ""),
    ("event", {"id": "made"}, ""),  # unchanged
    ("cancel_event", {"id": "made"}, ""),
    ("handled", {"sender": f"answered.a@{SAMPLE}.test"}, ""),
    ("event", {}, ""),  # a failure: missing id
]


def _commands(
    engine: Engine, mailer: Mailer, db: Database, message: int,
    workflows: list[Workflow], now: dt.datetime,
) -> None:  # fmt: skip
    """Every verb's confirmation and one refusal, as the alias desk renders them."""
    from ..receiving.alias import Desk

    desk = Desk(mailer, lambda: workflows, engine.desk.vocabulary)
    _sent_digests(db, workflows, now)
    parsed = ParsedMessage(f"<{SAMPLE}@{SAMPLE}.test>", STAFF, "Sam Sample", SAMPLE, None)
    executor = Executor(mailer, lambda: workflows, desk.vocabulary)
    for verb, arguments, text in _COMMANDS:
        command = Command(verb, dict(arguments), text)
        outcome = executor.execute(Request(db, command, message, parsed, parsed.from_address
                                           or "", now))  # fmt: skip
        desk._reply_mail(message, parsed, outcome, now)
    desk._refusal_mail(db, message, parsed, Command("help"), "fail", SAMPLE, now, 2)
