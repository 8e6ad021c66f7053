"""What the staff asks of the store: who answered, what is queued, a digest preview, exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any

from . import outbox
from .digest import digest_context
from .engine import Engine
from .occurrences import due_at, nominal_day, occurrence_day, occurrence_id
from .render import Rendered
from .steps import Occurrence, base_context
from .workflow import Workflow


@dataclass
class DefiStatus:
    id: str
    name: str
    answered_at: str | None = None
    sender: str | None = None
    via: str | None = None
    late: bool = False
    flagged: list[str] = field(default_factory=list)


@dataclass
class Status:
    workflow: str
    occurrence: str
    day: dt.date | None
    defis: list[DefiStatus]
    runs: list[tuple[str, str, str]]
    outbox: dict[str, int]
    failed: list[tuple[str, str]]


def find_workflow(engine: Engine, name: str | None) -> Workflow:
    collecting = [w for w in engine.workflows if w.collect is not None]
    if name is None:
        if not collecting:
            raise KeyError("no workflow collects replies")
        return collecting[0]
    for w in engine.workflows:
        if w.name == name:
            return w
    raise KeyError(f"no workflow named {name!r}")


def current_occurrence(engine: Engine, workflow: Workflow, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return occurrence_id(workflow.schedule, now.astimezone(engine.config.timezone).date())


def status(engine: Engine, workflow: Workflow, occurrence: str) -> Status:
    """Per défi: whether and when it answered; the steps run; the outbox of the occurrence."""
    db = engine.db
    day = occurrence_day(workflow.schedule, occurrence)
    answers: dict[str, tuple[str, str, str, str]] = {}
    for defi, received_at, sender, via, state in db.execute(
        "select defi, received_at, sender, via, status from inbound where kind = 'answer'"
        " and workflow = ? and occurrence = ? order by received_at, message",
        [workflow.name, occurrence],
    ):
        answers[defi] = (received_at, sender, via, state)
    reference = day or nominal_day(workflow.schedule, occurrence)
    defis = []
    for d_id, name, active_from, active_until in db.execute(
        "select id, name, active_from, active_until from defis order by name"
    ):
        if (active_from and active_from > reference.isoformat()) or (
            active_until and active_until < reference.isoformat()
        ):
            continue
        row = DefiStatus(d_id, name)
        if d_id in answers:
            received_at, sender, via, state = answers[d_id]
            if state in ("counted", "late"):
                row.answered_at, row.sender, row.via, row.late = (
                    received_at,
                    sender,
                    via,
                    state == "late",
                )
            else:
                row.flagged.append(f"{state} reply from {sender}")
        defis.append(row)
    runs = [
        (r[0], r[1], r[2])
        for r in db.execute(
            "select step, status, ran_at from runs where workflow = ? and occurrence = ?"
            " order by due_at",
            [workflow.name, occurrence],
        )
    ]
    failed = [
        (r[0], r[1] or "")
        for r in db.execute(
            "select subject, error from outbox where workflow = ? and occurrence = ?"
            " and status = 'failed'",
            [workflow.name, occurrence],
        )
    ]
    return Status(
        workflow.name, occurrence, day, defis, runs,
        outbox.counts(db, workflow.name, occurrence), failed,
    )  # fmt: skip


def preview(
    engine: Engine, workflow: Workflow, occurrence: str, step_id: str, language: str | None = None
) -> Rendered:
    """The mail a digest step would send now, rendered and not queued."""
    step = workflow.step(step_id)
    day = occurrence_day(workflow.schedule, occurrence) or nominal_day(
        workflow.schedule, occurrence
    )
    occ = Occurrence(workflow, occurrence, day)
    due = due_at(step, day, engine.config.timezone)
    now = dt.datetime.now(dt.UTC)
    context = base_context(engine.config, occ, step, due, now, late=False)
    if step.action == "digest":
        context |= digest_context(engine.db, workflow, occurrence, day)
    context |= {"language": language or engine.config.language, "recipient": step.to, "defi": None}
    return engine.renderer.render(step.template, language or engine.config.language, context)


def export_answers(engine: Engine, fmt: str, workflow: Workflow | None = None) -> str:
    """Every answer, one row per (workflow, occurrence, défi, message), as CSV or JSON."""
    names = {d[0]: d[1] for d in engine.db.execute("select id, name from defis")}
    rows: list[dict[str, Any]] = []
    params: list[str] = []
    clause = ""
    if workflow is not None:
        clause, params = " and workflow = ?", [workflow.name]
    for wf, occ, defi, status_, received_at, sender, data in engine.db.execute(
        "select workflow, occurrence, defi, status, received_at, sender, data from inbound"
        f" where kind = 'answer'{clause} order by workflow, occurrence, defi, received_at",
        params,
    ):
        content = json.loads(data) if data else {}
        row = {
            "workflow": wf, "occurrence": occ, "defi": defi, "defi_name": names.get(defi, defi),
            "status": status_, "received_at": received_at, "sender": sender,
        }  # fmt: skip
        row |= content.get("sections", {}) | content.get("fields", {})
        rows.append(row)
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or ["workflow"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
