"""The ``report`` step kind: a period's numbers of a collecting workflow, for the staff.

For the weeks of ``source`` (a collecting workflow) whose day falls in the report's month:
the participation of each défi and of each week, the défis gone silent for three weeks or
more, the needs raised and the help requests still open. The templates draw the
participation as HTML tables (which Outlook shows, unlike images or CSS widths on
``div``) and as a small text table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from ..store import participation
from ..store.db import Database
from ..store.states import Respondent
from .kinds import Fail, Kind, register
from .occurrences import day_of, occurrences_around
from .roster import respondent_info, stored_roster
from .workflow import load_workflow

if TYPE_CHECKING:
    from ..receiving.sections import SectionSpec
    from ..sending.compose import Mailer
    from .steps import Occurrence
    from .workflow import Step, Workflow

SILENT_AFTER = 3  # weeks without an answer that make a défi "silent"


@register
class Report(Kind):
    """The month's participation, silences, needs and open help requests, to the staff."""

    name = "report"
    audiences = ("staff", "alias")
    reads_answers = True

    def check(self, step: Step, every: str, collect: SectionSpec | None, fail: Fail) -> None:
        super().check(step, every, collect, fail)
        if every != "month":
            fail("action", "a step of a monthly workflow (schedule.every = 'month')", step.action)
        if not step.source:
            fail("source", "the collecting workflow whose answers are counted", step.source)

    def context(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        now: dt.datetime,
    ) -> dict[str, Any]:  # fmt: skip
        source = _source(occ.workflow, step.source)
        return {"report": month_report(db, source, occ.day, mailer.config.timezone)}


def _source(workflow: Workflow, name: str) -> Workflow:
    """The collecting workflow a report counts, from the same folder as the report's."""
    return load_workflow(workflow.path.parent / f"{name}.toml")


def month_report(db: Database, source: Workflow, day: dt.date, tz: dt.tzinfo) -> dict[str, Any]:
    """The numbers of ``source`` over the month of ``day``."""
    first = day.replace(day=1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    weeks = [
        (o, day_of(source.schedule, o)) for o in occurrences_around(source.schedule, first, last)
    ]
    weeks = [(o, d) for o, d in weeks if first <= d <= last]
    ids = [o for o, _ in weeks]
    asked = participation.asked(db, source.name, ids)
    answers = participation.answered(db, source.name, ids)
    roster = stored_roster(db)
    defis = [d for d in roster.defis if d.active_on(last) or d.active_on(first)]
    rows = []
    for defi in defis:
        rid = Respondent.defi(defi.id)
        cells = [
            "answered" if (o, rid) in answers else "missing" if (o, rid) in asked else "none"
            for o, _ in weeks
        ]
        due = sum(c != "none" for c in cells)
        rows.append({
            "name": defi.name, "cells": cells, "answered": cells.count("answered"), "asked": due,
            "percent": round(100 * cells.count("answered") / due) if due else None,
        })  # fmt: skip
    columns = []
    for o, d in weeks:
        n_asked = sum(1 for (occ, _) in asked if occ == o)
        n_answered = sum(1 for (occ, _) in answers if occ == o)
        percent = round(100 * n_answered / n_asked) if n_asked else 0
        columns.append({"occurrence": o, "day": d, "asked": n_asked, "answered": n_answered,
                        "percent": percent})  # fmt: skip
    return {
        "month": first, "weeks": columns, "defis": rows,
        "silent": _silent(db, source, roster, last),
        "needs": _needs(roster, answers, weeks),
        "help_requests": [
            {"sender": s, "subject": subject,
             "received_at": dt.datetime.fromisoformat(r).astimezone(tz)}
            for s, subject, r in participation.open_help_requests(db)
        ],
    }  # fmt: skip


def _silent(db: Database, source: Workflow, roster: Any, last: dt.date) -> list[Any]:
    """Défis whose last answer is three weeks old or more (or who never answered)."""
    latest = participation.last_answers(db, source.name)
    found = []
    for defi in roster.defis:
        if not defi.active_on(last):
            continue
        answered = latest.get(Respondent.defi(defi.id))
        since = day_of(source.schedule, answered) if answered else None
        if since is None or (last - since).days >= 7 * SILENT_AFTER:
            found.append({"name": defi.name, "since": since})
    return found


def _needs(roster: Any, answers: dict[tuple[str, str], str], weeks: list[Any]) -> list[Any]:
    days = dict(weeks)
    found = []
    for (occurrence, respondent), data in sorted(answers.items()):
        need = json.loads(data).get("sections", {}).get("needs")
        if need:
            who = respondent_info(roster, respondent)
            found.append({"who": who, "occurrence": occurrence, "day": days[occurrence],
                          "text": need})  # fmt: skip
    return found
