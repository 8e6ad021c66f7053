"""What the staff asks of the store: who answered, what is queued, a digest preview, exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..programme import absences
from ..programme.kinds import to_read
from ..programme.occurrences import day_of, due_at, nominal_day, occurrence_day, occurrence_id
from ..programme.roster import respondent_info, stored_roster
from ..programme.steps import Occurrence, step_context
from ..programme.workflow import Workflow, main_workflow
from ..sending.render import Rendered
from ..store import inbound, outgoing, schedule, states
from ..store.outgoing import Suppression, suppressions
from ..store.states import ANSWERED, Respondent

if TYPE_CHECKING:
    from ..running.engine import Engine


@dataclass
class RespondentStatus:
    id: str
    name: str
    answered_at: dt.datetime | None = None  # local time, as every time of a Status
    sender: str | None = None
    via: str | None = None
    late: bool = False
    corrected_late: bool = False  # answered on time, corrected after the digest
    others: list[dict[str, str]] = field(default_factory=list)  # {"status", "sender"}


@dataclass
class Status:
    workflow: str
    title: str
    occurrence: str
    day: dt.date | None
    respondents: list[RespondentStatus]
    runs: list[dict[str, Any]]  # {"step", "status", "reason", "ran_at", "note"}
    outbox: dict[str, int]
    failed: list[tuple[str, str]]
    suppressed: list[tuple[Suppression, str]] = field(default_factory=list)  # with who
    to_read: list[dict[str, Any]] = field(default_factory=list)  # mail a person must read
    # Absences not over by the occurrence's day: {"address", "name", "defi", "first_day",
    # "last_day", "source"}.
    absences: list[dict[str, Any]] = field(default_factory=list)


def find_workflow(engine: Engine, name: str | None) -> Workflow:
    """The workflow named, or the main one (see ``workflow.main_workflow``)."""
    return main_workflow(engine.workflows, name)


def current_occurrence(engine: Engine, workflow: Workflow, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return occurrence_id(workflow.schedule, now.astimezone(engine.config.timezone).date())


def expected_respondents(engine: Engine, workflow: Workflow, occurrence: str) -> list[str]:
    """Who was asked for this occurrence, or who will be: active défis, or the staff."""
    found = outgoing.asked(engine.db, workflow.name, occurrence)
    if found:
        return found
    roster = stored_roster(engine.db)
    if any(s.to == "each_staff" for s in workflow.steps):
        return [Respondent.staff(s.address) for s in roster.staff]
    day = occurrence_day(workflow.schedule, occurrence) or nominal_day(
        workflow.schedule, occurrence
    )
    return [Respondent.defi(d.id) for d in roster.defis if d.active_on(day)]


def status(engine: Engine, workflow: Workflow, occurrence: str) -> Status:
    """Per respondent: whether and when it answered; the steps run; the outbox of the occurrence."""
    db = engine.db
    roster = stored_roster(db)
    rows = []
    tz = engine.config.timezone
    answers = inbound.every_answer(db, workflow.name, occurrence)
    for respondent in expected_respondents(engine, workflow, occurrence):
        row = RespondentStatus(respondent, respondent_info(roster, respondent)["name"])
        found = answers.get(respondent, [])
        # The first answer that counts says when the respondent answered; one on time
        # stays on time when a correction comes after the digest. Mail from others for
        # it is a flag beside it, never in its place.
        counted = [a for a in found if a[3] == states.Status.COUNTED] or [
            a for a in found if a[3] == states.Status.LATE
        ]
        if counted:
            received_at, sender, via, state = counted[0]
            row.answered_at = dt.datetime.fromisoformat(received_at).astimezone(tz)
            row.sender, row.via, row.late = sender, via, state == states.Status.LATE
            row.corrected_late = not row.late and any(a[3] == states.Status.LATE for a in found)
        row.others = [
            {"status": state, "sender": sender}
            for _, sender, _, state in found
            if state not in ANSWERED
        ]
        rows.append(row)
    runs = [
        {"step": r[0], "status": r[1], "reason": r[3], "note": r[4],
         "ran_at": dt.datetime.fromisoformat(r[2]).astimezone(tz)}
        for r in schedule.runs_of(db, workflow.name, occurrence)
    ]  # fmt: skip
    failed = outgoing.failed_mails(db, workflow.name, occurrence)
    day = day_of(workflow.schedule, occurrence)
    return Status(
        workflow.name, workflow.title, occurrence, occurrence_day(workflow.schedule, occurrence),
        sorted(rows, key=lambda r: r.name.lower()), runs,
        outgoing.counts(db, workflow.name, occurrence), failed,
        _suppressed(engine, workflow, occurrence, [r.id for r in rows]),
        _to_read(engine, occurrence_day(workflow.schedule, occurrence)),
        absences.listed(db, roster, day),
    )  # fmt: skip


TO_READ_WINDOW = dt.timedelta(days=7)


def _to_read(engine: Engine, day: dt.date | None) -> list[dict[str, Any]]:
    """Human mail no step shows anyone, received within a week of the occurrence's day."""
    if day is None:
        return []
    found = to_read(engine.db, engine.config, listed=True)
    listed = {m["message"] for m in to_read(engine.db, engine.config)}
    span = (day - TO_READ_WINDOW, day + TO_READ_WINDOW)
    return [
        m | {"listed": m["message"] not in listed}
        for m in found
        if span[0] <= m["received_at"].date() <= span[1]
    ]


def _suppressed(
    engine: Engine, workflow: Workflow, occurrence: str, respondents: list[str]
) -> list[tuple[Suppression, str]]:
    """Suppressed addresses among the occurrence's recipients, each with who it is."""
    found = suppressions(engine.db)
    if not found:
        return []
    roster = stored_roster(engine.db)
    who: dict[str, str] = {}
    for respondent in respondents:
        name = respondent_info(roster, respondent)["name"]
        for d in roster.defis:
            if Respondent.defi(d.id) == respondent:
                who.update((a, name) for a in d.addresses)
        for s in roster.staff:
            if Respondent.staff(s.address) == respondent:
                who[s.address] = name
    for to in outgoing.envelopes(engine.db, workflow.name, occurrence):
        for address in to:
            who.setdefault(address.lower(), "")
    return [(found[a], who[a]) for a in sorted(who) if a in found]


@dataclass(frozen=True)
class Preview:
    """A digest as it went out (``sent_at``), or as it would go out now, with what to know."""

    rendered: Rendered
    sent_at: dt.datetime | None = None
    asked: bool = True  # whether the occurrence's request went out


def preview(
    engine: Engine, workflow: Workflow, occurrence: str, step_id: str, language: str | None = None
) -> Preview:
    """The mail of a digest step: the one sent, if it went out; else rendered now, not queued.

    A digest that went out is shown as it was sent, not rebuilt: an announcement or a late
    answer that came after it belongs to the next one.
    """
    from ..receiving.commands import sent_digest

    step = workflow.step(step_id)
    sent = sent_digest(engine.db, workflow.name, step.id, occurrence)
    if sent is not None:
        return Preview(_as_sent(sent.raw), sent.sent_at.astimezone(engine.config.timezone))
    day = day_of(workflow.schedule, occurrence)
    occ = Occurrence(workflow, occurrence, day)
    due = due_at(step, day, engine.config.timezone, workflow.schedule)
    now = dt.datetime.now(dt.UTC)
    context = step_context(engine.db, engine.mailer, occ, step, due, now, late=False)
    context |= {
        "language": language or engine.config.language, "recipient": step.to, "who": None,
        "defi": None,
    }  # fmt: skip
    rendered = engine.renderer.render(step.template, language or engine.config.language, context)
    opening = workflow.opening
    asked = (
        opening is None
        or schedule.ran_at(engine.db, workflow.name, occurrence, opening.id) is not None
    )
    return Preview(rendered, None, asked)


def _as_sent(raw: bytes) -> Rendered:
    import email
    import email.policy

    message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = {}
    for kind in ("plain", "html"):
        part = message.get_body((kind,))
        parts[kind] = part.get_content() if part is not None else None
    return Rendered(str(message["Subject"] or ""), parts["plain"] or "", parts["html"])


def export_answers(
    engine: Engine, fmt: str, workflow: Workflow | None = None, *, spreadsheet: bool = False
) -> str:
    """Every answer, one row per (workflow, occurrence, respondent, message), CSV or JSON.

    Each row carries the answer's whole text, and ``superseded_by`` the message that
    replaced it (a later answer of the same respondent for the same occurrence). With
    ``spreadsheet``, the CSV is for the staff's spreadsheet: column titles and statuses in
    the configured language (``templates/reports/export.LANG.toml``), local times, ``;``
    between columns and a UTF-8 byte order mark, as French spreadsheets expect.
    """
    rows = _answer_rows(engine, workflow)
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    columns = columns or ["workflow"]
    buffer = io.StringIO()
    if not spreadsheet:
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    labels = _labels(engine)
    titles = _titles(engine, labels["columns"])
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", delimiter=";")
    writer.writerow({c: titles.get(c, c) for c in columns})
    tz = engine.config.timezone
    for row in rows:
        local = dt.datetime.fromisoformat(row["received_at"]).astimezone(tz)
        writer.writerow(row | {
            "received_at": local.strftime("%Y-%m-%d %H:%M"),
            "status": labels["status"].get(row["status"], row["status"]),
        })  # fmt: skip
    return "\ufeff" + buffer.getvalue()


def _answer_rows(engine: Engine, workflow: Workflow | None) -> list[dict[str, Any]]:
    roster = stored_roster(engine.db)
    addresses: dict[str, str] = {Respondent.staff(s.address): s.address for s in roster.staff}
    rows: list[dict[str, Any]] = []
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (
        message,
        wf,
        occ,
        respondent,
        state,
        received_at,
        sender,
        data,
    ) in inbound.answers_for_export(engine.db, workflow.name if workflow else None):
        content = json.loads(data) if data else {}
        who = respondent or ""
        defi_id = Respondent(who).defi_id
        row = {
            "workflow": wf, "occurrence": occ,
            "respondent": defi_id if defi_id is not None else addresses.get(who, who),
            "name": respondent_info(roster, who)["name"], "status": state,
            "received_at": received_at, "sender": sender, "message": message,
            "superseded_by": None,
        }  # fmt: skip
        row |= content.get("sections", {}) | content.get("fields", {})
        row["text"] = content.get("text", "")
        if state in ANSWERED:
            key = (wf, occ, who)
            if key in latest:
                latest[key]["superseded_by"] = message
            latest[key] = row
        rows.append(row)
    return rows


def _labels(engine: Engine) -> dict[str, dict[str, str]]:
    """Column titles and status words of a spreadsheet export, in the configured language."""
    import tomllib

    path = engine.config.templates_dir / "reports" / f"export.{engine.config.language}.toml"
    with path.open("rb") as f:
        data = tomllib.load(f)
    return {"columns": dict(data.get("columns", {})), "status": dict(data.get("status", {}))}


def _titles(engine: Engine, columns: dict[str, str]) -> dict[str, str]:
    """Fixed columns by their title; a section or field by its workflow's first heading."""
    titles = dict(columns)
    for workflow in engine.workflows:
        for heading in workflow.collect.headings if workflow.collect else ():
            titles.setdefault(heading.key, heading.names[0])
    return titles
