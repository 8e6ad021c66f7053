"""The archive's views and canned queries, named in the staff's language.

The base tables of ``store.archive`` keep English names; what the staff browse are views
over them whose names and column names come from the wording file
(``templates/archive/archive.LANG.toml``), and whose statuses and yes/no read as words of
that language. Every view and query is made here, as SQL, from that wording and the
workflows: nothing programme-specific is written in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..programme.workflow import Workflow
from .archive import KEPT, Source, quoted, section_column


@dataclass(frozen=True)
class Shown:
    """A view or canned query as Datasette shows it."""

    name: str
    title: str
    description: str
    sql: str = ""  # a canned query's SQL (views are created, not listed)
    sort_desc: str = ""  # a view's default order
    search: bool = False  # a view over the answers: full-text search with ?_search=


@dataclass(frozen=True)
class Views:
    statements: list[str]
    views: list[Shown]
    queries: list[Shown]


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Words:
    def __init__(self, wording: Mapping[str, Any]) -> None:
        self.w = wording

    def __call__(self, *path: str) -> str:
        value: Any = self.w
        for key in path:
            value = value[key]
        return str(value)

    def col(self, key: str) -> str:
        return quoted(self("columns", key))

    def yes_no(self, expression: str) -> str:
        return f"case when {expression} then {literal(self('yes'))} else {literal(self('no'))} end"

    def mapped(self, table: str, expression: str) -> str:
        """The expression's value as the wording's ``[table]`` names it (itself if unnamed)."""
        words: Mapping[str, str] = self.w.get(table, {})
        cases = " ".join(f"when {literal(k)} then {literal(str(v))}" for k, v in words.items())
        return f"case {expression} {cases} else {expression} end" if cases else expression

    def section(self, workflow: Workflow, key: str) -> str:
        names: Mapping[str, str] = self.w.get("sections", {})
        assert workflow.collect is not None
        heading = next(h for h in workflow.collect.headings if h.key == key)
        return names.get(key) or heading.names[0]


def main_workflow(source: Source) -> Workflow | None:
    """The workflow the canned queries are about: the first one asking each défi."""
    collecting = list(source.collecting.values())
    asking = [w for w in collecting if any(s.to == "each_defi" for s in w.steps)]
    found = asking or collecting
    return found[0] if found else None


def build_views(source: Source, wording: Mapping[str, Any]) -> Views:
    """The statements that (re)create every view, and what Datasette shows of them."""
    words = _Words(wording)
    statements: list[str] = []
    views: list[Shown] = []

    def view(shown: Shown, select: str) -> None:
        statements.append(f"drop view if exists {quoted(shown.name)}")
        statements.append(f"create view {quoted(shown.name)} as {select}")
        views.append(shown)

    answer_views = {}
    for workflow in source.collecting.values():
        shown = _answers_view(words, workflow)
        answer_views[workflow.name] = shown.name
        view(shown, _answers_select(words, source, workflow))
    main = main_workflow(source)
    needs_key = words("views", "needs", "section")
    if main is not None and needs_key in source.keys:
        view(_shown(words, "needs", sort=words("columns", "received")),
             _needs_select(words, main, needs_key))  # fmt: skip
    view(_shown(words, "help", sort=words("columns", "received")), _help_select(words))
    view(_shown(words, "events", sort=words("columns", "starts")), _events_select(words))
    if main is not None:
        view(_shown(words, "participation", sort=words("columns", "day")),
             _participation_select(words, main))  # fmt: skip
    queries = [] if main is None else _queries(words, main, answer_views[main.name], needs_key)
    return Views(statements, views, queries)


def _shown(words: _Words, key: str, sort: str = "", **names: str) -> Shown:
    return Shown(
        words("views", key, "name").format(**names),
        words("views", key, "title").format(**names),
        words("views", key, "description").format(**names),
        sort_desc=sort,
    )


def _respondent_label(words: _Words, workflow: Workflow) -> str:
    kind = "staff" if any(s.to == "each_staff" for s in workflow.steps) else "defi"
    return quoted(words("respondent", kind))


def _occurrence_label(words: _Words, workflow: Workflow) -> str:
    return quoted(words("occurrence", workflow.schedule.every))


def _answers_view(words: _Words, workflow: Workflow) -> Shown:
    shown = _shown(words, "answers", words("columns", "received"),
                   workflow=workflow.name, title=workflow.title)  # fmt: skip
    return Shown(shown.name, shown.title, shown.description, sort_desc=shown.sort_desc,
                 search=True)  # fmt: skip


def _answers_select(words: _Words, source: Source, workflow: Workflow) -> str:
    assert workflow.collect is not None
    sections = ", ".join(
        f"a.{quoted(section_column(h.key))} as {quoted(words.section(workflow, h.key))}"
        for h in workflow.collect.headings
    )
    c = words.col
    return (
        f"select a.message as {c('message')}, r.name as {_respondent_label(words, workflow)},"
        f" r.defi as {c('defi_id')}, a.occurrence as {_occurrence_label(words, workflow)},"
        f" a.day as {c('day')}, {sections}, a.received_local as {c('received')},"
        f" {words.mapped('status', 'a.status')} as {c('status')}, {words.yes_no('a.kept')} as"
        f" {c('current')}, a.superseded_by as {c('superseded_by')}, a.sender as {c('sender')},"
        f" a.text as {c('text')} from base_answers a left join base_respondents r"
        f" on r.id = a.respondent where a.workflow = {literal(workflow.name)}"
    )


def _needs_select(words: _Words, workflow: Workflow, key: str) -> str:
    c = words.col
    return (
        f"select a.message as {c('message')}, r.name as {quoted(words('respondent', 'defi'))},"
        f" r.defi as {c('defi_id')}, a.occurrence as {_occurrence_label(words, workflow)},"
        f" a.day as {c('day')}, a.{quoted(section_column(key))} as"
        f" {quoted(words.section(workflow, key))}, a.received_local as {c('received')}"
        " from base_answers a left join base_respondents r on r.id = a.respondent"
        f" where a.workflow = {literal(workflow.name)} and a.kept"
        f" and coalesce(a.{quoted(section_column(key))}, '') != ''"
    )


def _help_select(words: _Words) -> str:
    c = words.col
    return (
        f"select h.received as {c('received')}, h.sender as {c('sender')},"
        f" r.name as {quoted(words('respondent', 'defi'))}, h.subject as {c('subject')},"
        f" {words.yes_no('h.answered_at is not null')} as {c('answered')},"
        f" h.answered_at as {c('answered_at')}, h.answered_by as {c('answered_by')}"
        " from base_help h left join base_respondents r on r.id = h.respondent"
    )


def _events_select(words: _Words) -> str:
    c = words.col
    return (
        f"select e.title as {c('event')}, {words.mapped('event_kind', 'e.kind')} as {c('kind')},"
        f" e.starts as {c('starts')}, e.ends as {c('ends')}, e.place as {c('place')},"
        f" e.theme as {c('theme')}, {words.mapped('audience', 'e.audience')} as {c('audience')},"
        f" {words.mapped('event_status', 'e.status')} as {c('event_status')},"
        " (select count(distinct recipient) from base_invitations i where i.event = e.id)"
        f" as {c('invited')}, (select count(*) from base_invitations i where i.event = e.id)"
        f" as {c('invitations')} from base_events e"
    )


def _participation_select(words: _Words, workflow: Workflow) -> str:
    c = words.col
    return (
        f"select r.name as {quoted(words('respondent', 'defi'))}, r.defi as {c('defi_id')},"
        f" p.occurrence as {_occurrence_label(words, workflow)}, p.day as {c('day')},"
        f" {words.yes_no('p.answered')} as {c('replied')},"
        f" {words.yes_no('p.on_time')} as {c('answered_on_time')},"
        f" p.first_answer as {c('received')}, p.reminders as {c('reminders')}"
        " from base_participation p left join base_respondents r on r.id = p.respondent"
        f" where p.workflow = {literal(workflow.name)}"
    )


def _queries(words: _Words, workflow: Workflow, answers: str, needs_key: str) -> list[Shown]:
    c = words.col
    defi = quoted(words("respondent", "defi"))
    occurrence = _occurrence_label(words, workflow)
    param = words("queries", "history", "parameter")
    name = literal(workflow.name)
    kept = ",".join(literal(s) for s in KEPT)

    def query(key: str, sql: str) -> Shown:
        q = ("queries", key)
        return Shown(words(*q, "name"), words(*q, "title"), words(*q, "description"), sql)

    # By the base table's indexes (kept answers of one respondent), not the view's words.
    history = query("history", (
        f"select * from {quoted(answers)} where {c('message')} in (select message from"
        f" base_answers where workflow = {name} and kept and respondent in (select id from"
        f" base_respondents where lower(defi) = lower(:{param}) or lower(name) = lower(:{param})))"
        f" order by {c('day')} desc, {c('received')} desc"
    ))  # fmt: skip
    found = [history]
    if needs_key:
        needs = words("views", "needs", "name")
        found.append(query("recent_needs", (
            f"select * from {quoted(needs)} where {c('day')} >= date('now', '-28 days')"
            f" order by {c('day')} desc, {defi}"
        )))  # fmt: skip
    found.append(query("not_answered", (
        f"select r.name as {defi}, r.defi as {c('defi_id')}, a.occurrence as {occurrence},"
        f" a.day as {c('day')}, a.reminders as {c('reminders')} from base_asked a"
        " join base_respondents r on r.id = a.respondent"
        f" where a.workflow = {name} and a.day = (select max(day) from base_asked"
        f" where workflow = {name}) and not exists (select 1 from base_answers x"
        " where x.workflow = a.workflow and x.occurrence = a.occurrence"
        f" and x.respondent = a.respondent and x.status in ({kept})) order by r.name"
    )))  # fmt: skip
    marks = (f"case when p.answered then {literal(words('answered'))}"
             f" else {literal(words('missed'))} end")  # fmt: skip
    found.append(query("quarter", (
        f"select r.name as {defi}, r.defi as {c('defi_id')}, count(*) as {c('weeks')},"
        f" sum(p.answered) as {c('replied')}, sum(p.on_time) as {c('answered_on_time')},"
        f" cast(round(100.0 * sum(p.answered) / count(*)) as integer) as {c('rate')},"
        f" group_concat(p.mark, '') as {c('marks')} from (select p.*, {marks} as mark"
        f" from base_participation p where p.workflow = {name}"
        " and p.day >= date('now', '-3 months') order by p.day) p"
        f" join base_respondents r on r.id = p.respondent group by r.id order by r.name"
    )))  # fmt: skip
    return found
