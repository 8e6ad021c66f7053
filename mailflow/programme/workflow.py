"""Workflows: the TOML files in ``workflows/`` that say what mailflow does and when.

A workflow has a schedule (when its occurrences happen), steps (what to send to whom,
at what local time of the occurrence's day) and, when it collects replies, the sections
to split them into. The format is documented in the README, with ``workflows/retro.toml``
as the worked example. Everything is checked at load time: an error names the file,
the key and what was expected.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..receiving.sections import Heading, SectionSpec, spec_from_table
from ..tomltable import _MISSING as _REQUIRED
from ..tomltable import ID, LANGUAGE, TEMPLATE, Table
from .audiences import AUDIENCES
from .calendars import region_problem

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EVENT_KINDS = ("session", "bootcamp", "seminar", "other")
FILTERS = ("", "not_answered", "answered")
WHEN_LATE = ("skip", "note", "staff")
ON_HOLIDAY = ("previous_working_day", "skip", "keep")


@dataclass(frozen=True)
class Schedule:
    """When occurrences happen: weekly, monthly, every working day, or for each event.

    Occurrences are named ``2026-W48`` (week), ``2026-11`` (month), ``2026-11-27`` (day)
    or ``ev-<event id>`` (event, whose start day is the occurrence's day).
    """

    every: str  # "week", "month", "day" or "event"
    day: str  # "friday"; monthly: "last friday", "first monday", "last working day", "15"
    holidays: str = ""  # country code for public holidays (holidays package), "" for none
    subdivision: str = ""  # e.g. "57" (Moselle) or "6AE" (Alsace) for France
    on_holiday: str = "previous_working_day"
    skip: tuple[str, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None
    kinds: tuple[str, ...] = ()  # for every = "event": the kinds of events (all if empty)


@dataclass(frozen=True)
class Step:
    """One thing to do for each occurrence, at a local time of its day."""

    id: str
    at: dt.time
    action: str
    template: str
    to: str
    only: str = ""
    unless_empty: tuple[str, ...] = ()
    days_before: int = 0
    working_days: bool = False
    grace: dt.timedelta = dt.timedelta(hours=2)
    when_late: str = "skip"
    source: str = ""  # for "notes": the collecting workflow whose answers are gathered


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    path: Path
    schedule: Schedule
    steps: tuple[Step, ...]
    collect: SectionSpec | None = None
    deadline: dt.time | None = None
    acknowledge: str = ""  # template of the receipt sent for each answer, "" for none
    language: str | None = None
    update_template: str = ""  # event workflows: sent when an announced event changes
    cancel_template: str = ""  # … and when it is cancelled
    help_after: dt.timedelta = dt.timedelta(days=2)  # "help" steps: unanswered this long
    # ``[collect] opens``: (weekday, time) from which an answer counts for the coming
    # occurrence; None for right after the previous digest (see ``opening``).
    opens: tuple[int, dt.time] | None = None

    @property
    def opening(self) -> Step | None:
        """The step that asks (the request), for a workflow that collects replies.

        Every other step of such a workflow follows from it: with no request sent, there
        is nothing to remind of and nothing to digest.
        """
        from .kinds import kind_of

        if self.collect is None:
            return None
        asking = [s for s in self.steps if kind_of(s).asks(s)]
        return max(asking, key=lambda s: (s.days_before, -_minutes(s.at)), default=None)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def _minutes(at: dt.time) -> int:
    return at.hour * 60 + at.minute


def reads_answers(step: Step) -> bool:
    """Whether what a step sends, or to whom, depends on the mail received.

    Such a step never runs on a tick that could not read the mailbox: a reminder would go
    to a team whose answer is waiting unread, a digest would miss it.
    """
    from .kinds import kind_of

    return kind_of(step).reads(step)


def _schedule(t: Table) -> Schedule:
    every = t.string("every", choices=("week", "month", "day", "event"))
    day = t.string("day", "" if every in ("day", "event") else _REQUIRED).strip().lower()
    if every in ("day", "event") and day:
        t.fail("day", f"no day: every = {every!r} happens on its own days", day)
    if every == "week" and day not in WEEKDAYS:
        t.fail("day", "a weekday such as 'friday'", day)
    if every == "month":
        words = day.split()
        ordinals = ("first", "second", "third", "fourth", "last")
        nth_weekday = len(words) == 2 and words[0] in ordinals and words[1] in WEEKDAYS
        monthly_ok = nth_weekday or (day.isdigit() and 1 <= int(day) <= 28)
        if not monthly_ok and day != "last working day":
            t.fail("day", "'first monday' … 'last friday', 'last working day' or 1-28", day)
    schedule = Schedule(
        every=every,
        day=day,
        holidays=t.string("holidays", ""),
        subdivision=t.string("subdivision", ""),
        on_holiday=t.string("on_holiday", "previous_working_day", choices=ON_HOLIDAY),
        skip=t.strings("skip", ()),
        start=t.date("start", None),
        end=t.date("end", None),
        kinds=t.strings("kinds", ()),
    )
    if schedule.kinds and every != "event":
        t.fail("kinds", "no kinds: only every = 'event' has them", list(schedule.kinds))
    unknown = [k for k in schedule.kinds if k not in EVENT_KINDS]
    if unknown:
        t.fail("kinds", "event kinds among " + ", ".join(EVENT_KINDS), unknown)
    problem = schedule.holidays and region_problem(schedule.holidays, schedule.subdivision)
    if problem:
        key, expected = problem
        t.fail(key, expected, getattr(schedule, key))
    t.done()
    return schedule


DIGEST_KEYS = ("answers", "missing", "away", "late_answers", "flags")
_OPENS = re.compile(r"^([a-z]+)\s+(\d{1,2}):(\d{2})$")


def _opens(t: Table, every: str) -> tuple[int, dt.time] | None:
    """``opens = "thursday 12:00"``: the weekday and local time answers open from."""
    value = t.string("opens", "").strip().lower()
    if not value:
        return None
    expected = "a weekday and a time such as 'thursday 12:00'"
    if every not in ("week", "month"):
        t.fail("opens", "no opens: only weekly and monthly workflows have one", value)
    m = _OPENS.match(value)
    if m is None or m.group(1) not in WEEKDAYS or int(m.group(2)) > 23 or int(m.group(3)) > 59:
        t.fail("opens", expected, value)
    return WEEKDAYS.index(m.group(1)), dt.time(int(m.group(2)), int(m.group(3)))


def _id(t: Table) -> str:
    step_id: str = t.string("id", pattern=ID)
    t.identify(step_id)
    return step_id


def _step(t: Table, collect: SectionSpec | None, every: str) -> Step:
    from .kinds import KINDS

    step = Step(
        id=_id(t),
        at=t.time("at"),
        action=t.string("action", choices=tuple(KINDS)),
        template=t.string("template", pattern=TEMPLATE),
        to=t.string("to", choices=AUDIENCES),
        only=t.string("only", "", choices=FILTERS),
        unless_empty=t.strings("unless_empty", ()),
        days_before=t.integer("days_before", 0, min=0, max=60),
        working_days=t.boolean("working_days", False),
        grace=t.duration("grace", dt.timedelta(hours=2)),
        when_late=t.string("when_late", "skip", choices=WHEN_LATE),
        source=t.string("source", ""),
    )
    if step.to == "attendees" and every != "event":
        t.fail("to", "an audience of the workflow: 'attendees' are an event workflow's", step.to)
    KINDS[step.action].check(step, every, collect, t.fail)
    t.done()
    return step


def load_workflow(path: Path) -> Workflow:
    root = Table.from_file(path)
    name = root.string("name", path.stem, pattern=ID)
    schedule = _schedule(root.table("schedule", required=True))
    collect = None
    deadline = None
    acknowledge = ""
    opens = None
    if root.has("collect"):
        table = root.table("collect")
        deadline = table.time("deadline", None)
        acknowledge = table.string("acknowledge", "", pattern=TEMPLATE, empty=True)
        opens = _opens(table, schedule.every)
        collect = spec_from_table(table)
        table.done()
    tables = root.tables("steps", required=True, label="step")
    steps = tuple(_step(t, collect, schedule.every) for t in tables)
    notify = root.table("notify")
    update_template = notify.string("update", "", pattern=TEMPLATE, empty=True)
    cancel_template = notify.string("cancel", "", pattern=TEMPLATE, empty=True)
    notify.done()
    if (update_template or cancel_template) and schedule.every != "event":
        root.fail("notify", "no [notify] table: only event workflows announce changes")
    help_table = root.table("help")
    help_after = help_table.duration("after", dt.timedelta(days=2))
    help_table.done()
    if not steps:
        root.fail("steps", "at least one step")
    ids = [s.id for s in steps]
    if len(set(ids)) != len(ids):
        root.fail("steps", "steps with distinct ids", ids)
    workflow = Workflow(
        name=name,
        title=root.string("title", name),
        path=path,
        schedule=schedule,
        steps=steps,
        collect=collect,
        deadline=deadline,
        acknowledge=acknowledge,
        language=root.string("language", None, pattern=LANGUAGE),
        update_template=update_template,
        cancel_template=cancel_template,
        help_after=help_after,
        opens=opens,
    )
    root.done()
    return workflow


def load_workflows(folder: Path) -> list[Workflow]:
    """Every ``*.toml`` of a folder, all valid, or a ``ConfigError`` for the first wrong one."""
    if not folder.is_dir():
        raise ConfigError("mailflow.workflows", "an existing folder of workflow files", str(folder))
    workflows = [load_workflow(p) for p in sorted(folder.glob("*.toml"))]
    names = [w.name for w in workflows]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("name", "a name used by one workflow only", name, str(folder))
    collecting = {w.name for w in workflows if w.collect is not None}
    for workflow in workflows:
        for step in workflow.steps:
            if step.source and step.source not in collecting:
                raise ConfigError(f"steps.{step.id}.source", "the name of a workflow that "
                                  "collects replies", step.source, str(workflow.path))  # fmt: skip
    return workflows


def main_workflow(workflows: list[Workflow], name: str | None = None) -> Workflow:
    """The workflow a command, ``status`` or the demo means: the one named, or by default
    the first that collects replies from the défis (else the first that collects any).

    Raises ``KeyError`` saying which is missing.
    """
    if name:
        for workflow in workflows:
            if workflow.name == name:
                return workflow
        raise KeyError(f"no workflow named {name!r}")
    collecting = [w for w in workflows if w.collect is not None]
    asking = [w for w in collecting if any(s.to == "each_defi" for s in w.steps)]
    if not collecting:
        raise KeyError("no workflow collects replies")
    return (asking or collecting)[0]


def digest_steps(workflow: Workflow) -> list[Step]:
    """The steps after which answers are late (the digests), in the workflow's order."""
    from .kinds import kind_of

    return [s for s in workflow.steps if kind_of(s).closes]


def merged_spec(workflows: list[Workflow], name: str | None = None) -> SectionSpec:
    """The headings a reply is split into before it is tied to one workflow.

    Those of the workflow named, else of the collecting workflows that ask the défis (the
    replies ``mailflow parse`` and ingest mostly see), else of every collecting workflow.
    Once a reply is tied to its workflow, that workflow's own headings apply.
    """
    collecting = [w for w in workflows if w.collect is not None]
    if name is not None:
        chosen = [w for w in collecting if w.name == name]
        if not chosen:
            raise ConfigError("--workflow", "the name of a workflow that collects replies", name)
    else:
        chosen = [w for w in collecting if any(s.to == "each_defi" for s in w.steps)] or collecting
    headings: dict[str, Heading] = {}
    empty: list[str] = []
    for workflow in chosen:
        assert workflow.collect is not None
        empty.extend(a for a in workflow.collect.empty_answers if a not in empty)
        for heading in workflow.collect.headings:
            known = headings.get(heading.key)
            extra = tuple(n for n in heading.names if known is None or n not in known.names)
            headings[heading.key] = Heading(
                heading.key, (known.names if known else ()) + extra, heading.kind
            )
    return SectionSpec(tuple(headings.values()), tuple(empty))


def collect_spec(workflows_dir: Path, name: str | None = None) -> SectionSpec:
    """``merged_spec`` of the workflow files of a folder."""
    return merged_spec(load_workflows(workflows_dir), name)
