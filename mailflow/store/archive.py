"""The archive database: a derived copy of what the staff may read, served by ``mailflow serve``.

It is built from the live database opened read-only (``mode=ro``), so serving never writes
the live one, and it runs beside the daemon (WAL). Only what is meant to be read is copied:
the answers (their text, sections and fields, never the raw mail), who was asked and
reminded, the names of the défis and staff, help requests, events and their invitations.
The token secret, raw bodies, the outbox and every internal table stay out, so that no
query of the archive, Datasette's arbitrary SQL included, can reach them.

``Archive.rebuild`` makes it anew (when ``serve`` starts: the workflows and language may
have changed); ``Archive.refresh`` then adds what arrived since, new answers going into the
full-text index (FTS5, accents folded) as they come. Base tables are named ``base_*``; the
views made for reading, in the staff's language, are in ``archive_views``.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import MailflowError
from ..programme.occurrences import nominal_day, occurrence_day
from ..programme.workflow import Workflow
from .states import Respondent

# The live tables the archive reads: a database older than these cannot be archived.
LIVE_TABLES = ("inbound", "outbox", "defis", "staff", "events", "help_requests")
KEPT = ("counted", "late")  # the statuses of an answer that counts
CHUNK = 500


class ArchiveError(MailflowError):
    """The live database cannot be archived (missing, unreadable, or of an older schema)."""


def quoted(name: str) -> str:
    """An SQL identifier, quoted: view and column names come from the wording files."""
    return '"' + name.replace('"', '""') + '"'


def section_column(key: str) -> str:
    return f"x_{key}"


@dataclass(frozen=True)
class Source:
    """What the archive needs of the programme: its workflows and its time zone."""

    workflows: list[Workflow]
    timezone: ZoneInfo
    collecting: dict[str, Workflow] = field(init=False)
    keys: tuple[str, ...] = field(init=False)  # every section and field key, in order

    def __post_init__(self) -> None:
        collecting = {w.name: w for w in self.workflows if w.collect is not None}
        keys: list[str] = []
        for w in collecting.values():
            assert w.collect is not None
            keys += [h.key for h in w.collect.headings if h.key not in keys]
        object.__setattr__(self, "collecting", collecting)
        object.__setattr__(self, "keys", tuple(keys))

    def day(self, workflow: str, occurrence: str) -> str | None:
        """The day an occurrence happens (its nominal day when skipped), ISO; None if unknown."""
        found = self.collecting.get(workflow)
        if found is None:
            return None
        try:
            day = occurrence_day(found.schedule, occurrence) or nominal_day(
                found.schedule, occurrence
            )
        except ValueError:  # an occurrence of an older schedule of the workflow
            return None
        return day.isoformat()

    def local(self, instant: str | None) -> str | None:
        """A stored UTC instant as the staff read it: local date and time to the minute."""
        if not instant:
            return None
        local = dt.datetime.fromisoformat(instant).astimezone(self.timezone)
        return local.strftime("%Y-%m-%d %H:%M")


def answer_count(archive: sqlite3.Connection) -> int:
    """How many answers the archive holds."""
    return int(archive.execute("select count(*) from base_answers").fetchone()[0])


def columns_of(archive: sqlite3.Connection, view: str) -> list[str]:
    """The column names of a view (or table) of the archive, in order."""
    return [r[1] for r in archive.execute(f"pragma table_info({quoted(view)})")]


def data_version(live: sqlite3.Connection) -> int:
    """A number that changes whenever another connection commits to the database."""
    return int(live.execute("PRAGMA data_version").fetchone()[0])


def open_live(path: Path) -> sqlite3.Connection:
    """The live database, read-only: serving it can never change it."""
    if not path.is_file():
        raise ArchiveError(f"no database at {path}: run mailflow (tick, run or the demo) first")
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30,
        check_same_thread=False,  # the refresh thread reads it after the start
    )  # fmt: skip
    conn.execute("PRAGMA busy_timeout=30000")
    try:
        names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ArchiveError(f"{path} cannot be read as a mailflow database ({e})") from None
    missing = [t for t in LIVE_TABLES if t not in names]
    if missing:
        conn.close()
        raise ArchiveError(
            f"{path} lacks the tables {', '.join(missing)}: run a mailflow command that "
            "updates it (`mailflow status`) first"
        )
    return conn


@dataclass
class Refreshed:
    """What a refresh changed, for the log."""

    answers_added: int = 0
    answers_removed: int = 0
    asked: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.answers_added or self.answers_removed or self.asked)


class Archive:
    """The archive database file, written by this process only."""

    def __init__(self, path: Path, source: Source) -> None:
        self.path = path
        self.source = source
        self.conn: sqlite3.Connection | None = None

    def rebuild(self, live: sqlite3.Connection) -> Refreshed:
        """Make the archive anew from the live database (the old file is removed first)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self.conn = conn
        with self._transaction():
            for statement in _schema(self.source.keys):
                conn.execute(statement)
        return self.refresh(live)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def refresh(self, live: sqlite3.Connection) -> Refreshed:
        """Bring the archive up to the live database's present state, in one transaction."""
        assert self.conn is not None, "rebuild() first"
        done = Refreshed()
        live.execute("BEGIN")  # one snapshot of the live database for the whole refresh
        try:
            with self._transaction():
                self._respondents(live)
                done.answers_added, done.answers_removed = self._answers(live)
                done.asked = self._outbox(live)
                if done.changed or self._meta("participation") is None:
                    self._participation()
                self._events(live)
                self._help(live)
                self._set_meta("refreshed_at", _now())
        finally:
            live.execute("COMMIT")
        return done

    def execute_script(self, statements: Iterable[str]) -> None:
        """Run statements in one transaction (the views of ``archive_views``)."""
        assert self.conn is not None
        with self._transaction():
            for statement in statements:
                self.conn.execute(statement)

    def _transaction(self) -> _Transaction:
        assert self.conn is not None
        return _Transaction(self.conn)

    def _meta(self, key: str) -> str | None:
        assert self.conn is not None
        row = self.conn.execute("select value from base_meta where key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        assert self.conn is not None
        self.conn.execute(
            "insert into base_meta (key, value) values (?, ?)"
            " on conflict (key) do update set value = excluded.value",
            [key, value],
        )

    def _respondents(self, live: sqlite3.Connection) -> None:
        assert self.conn is not None
        self.conn.execute("delete from base_respondents")
        rows = [(f"d-{i}", i, name, host, "defi")
                for i, name, host in live.execute("select id, name, host from defis")]  # fmt: skip
        rows += [
            (Respondent.staff(address), None, name or address, role, "staff")
            for address, name, role in live.execute("select address, name, role from staff")
        ]
        self.conn.executemany("insert into base_respondents values (?, ?, ?, ?, ?)", rows)

    def _answers(self, live: sqlite3.Connection) -> tuple[int, int]:
        """Add the answers not archived yet, drop those gone, and say which replaced which."""
        assert self.conn is not None
        present = {r[0] for r in live.execute(
            "select message from inbound where kind = 'answer' and workflow is not null"
            " and respondent is not null"
        )}  # fmt: skip
        archived = {r[0] for r in self.conn.execute("select message from base_answers")}
        added, removed = sorted(present - archived), sorted(archived - present)
        touched: set[tuple[str, str, str]] = set()
        for chunk in _chunks(removed):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "select message, text, workflow, occurrence, respondent from base_answers"
                f" where message in ({marks})",
                chunk,
            ).fetchall()
            self.conn.executemany(
                "insert into base_answers_fts (base_answers_fts, rowid, text) values"
                " ('delete', ?, ?)",
                [r[:2] for r in rows],
            )
            touched.update(r[2:] for r in rows)
            self.conn.execute(f"delete from base_answers where message in ({marks})", chunk)
        for chunk in _chunks(added):
            marks = ",".join("?" * len(chunk))
            rows = [self._answer_row(r) for r in live.execute(
                "select message, workflow, occurrence, respondent, sender, via, received_at,"
                f" status, data from inbound where message in ({marks})",
                chunk,
            )]  # fmt: skip
            columns = _answer_columns(self.source.keys)
            self.conn.executemany(
                f"insert into base_answers ({', '.join(quoted(c) for c in columns)})"
                f" values ({', '.join('?' * len(columns))})",
                rows,
            )
            self.conn.executemany(
                "insert into base_answers_fts (rowid, text) values (?, ?)",
                [(r[0], r[10]) for r in rows],
            )
            touched.update((r[1], r[2], r[3]) for r in rows)
        self._supersede(touched)
        return len(added), len(removed)

    def _answer_row(self, row: tuple[object, ...]) -> tuple[object, ...]:
        message, workflow, occurrence, respondent, sender, via, received_at, status, data = row
        content = json.loads(str(data)) if data else {}
        parts = {**(content.get("sections") or {}), **(content.get("fields") or {})}
        return (
            message, workflow, occurrence, respondent, sender or "", via,
            self.source.day(str(workflow), str(occurrence)), received_at,
            self.source.local(str(received_at)), status, content.get("text") or "",
            *(parts.get(k) or None for k in self.source.keys),
        )  # fmt: skip

    def _supersede(self, touched: set[tuple[str, str, str]]) -> None:
        """Within each (workflow, occurrence, respondent): every counting answer is replaced
        by the next one, and the last is the one kept (the one the digest shows)."""
        assert self.conn is not None
        if not touched:
            return
        self.conn.execute("create temp table if not exists touched (w, o, r)")
        self.conn.execute("delete from touched")
        self.conn.executemany("insert into touched values (?, ?, ?)", sorted(touched))
        marks = ",".join("?" * len(KEPT))
        self.conn.execute(
            "with ordered as (select message, lead(message) over (partition by workflow,"
            " occurrence, respondent order by received_at, message) as next from base_answers"
            f" where status in ({marks}) and (workflow, occurrence, respondent) in"
            " (select w, o, r from touched))"
            " update base_answers set superseded_by = ordered.next, kept = ordered.next is null"
            " from ordered where base_answers.message = ordered.message",
            KEPT,
        )

    def _outbox(self, live: sqlite3.Connection) -> int:
        """Who was asked and reminded, and who was invited to which event, from new mail."""
        assert self.conn is not None
        seen = int(self._meta("outbox_seen") or 0)
        opening = {w.name: w.opening.id for w in self.source.collecting.values() if w.opening}
        reminders = {(w.name, s.id) for w in self.source.collecting.values()
                     for s in w.steps if s.only == "not_answered"}  # fmt: skip
        invites = {(w.name, s.id) for w in self.source.workflows if w.schedule.every == "event"
                   for s in w.steps if s.action == "invite"}  # fmt: skip
        asked = 0
        # Only columns stored before the raw message are read: the mail itself is never touched.
        for outbox, workflow, occurrence, step, recipient in live.execute(
            "select id, workflow, occurrence, step, recipient from outbox where id > ? order by id",
            [seen],
        ):
            seen = outbox
            if recipient[:2] not in ("d-", "s-", "p-"):
                continue
            if opening.get(workflow) == step or (workflow, step) in reminders:
                self.conn.execute(
                    "insert into base_asked (workflow, occurrence, day, respondent, reminders)"
                    " values (?, ?, ?, ?, ?) on conflict do update set"
                    " reminders = reminders + excluded.reminders",
                    [workflow, occurrence, self.source.day(workflow, occurrence), recipient,
                     int((workflow, step) in reminders)],
                )  # fmt: skip
                asked += 1
            elif (workflow, step) in invites:
                self.conn.execute(
                    "insert or ignore into base_invitations values (?, ?, ?)",
                    [outbox, occurrence.removeprefix("ev-"), recipient],
                )
        self._set_meta("outbox_seen", str(seen))
        return asked

    def _participation(self) -> None:
        """Per respondent and occurrence asked: answered, on time, after how many reminders."""
        assert self.conn is not None
        self.conn.execute("delete from base_participation")
        marks = ",".join("?" * len(KEPT))
        self.conn.execute(
            "insert into base_participation select a.workflow, a.occurrence, a.day, a.respondent,"
            " x.first is not null, coalesce(x.on_time, 0), x.first, a.reminders"
            " from base_asked a left join (select workflow, occurrence, respondent,"
            " min(received_local) as first, max(status = 'counted') as on_time from base_answers"
            f" where status in ({marks}) group by workflow, occurrence, respondent) x"
            " using (workflow, occurrence, respondent)",
            KEPT,
        )
        self._set_meta("participation", _now())

    def _events(self, live: sqlite3.Connection) -> None:
        assert self.conn is not None
        self.conn.execute("delete from base_events")
        rows = live.execute(
            "select id, kind, title, starts, ends, place, theme, audience, status from events"
        ).fetchall()
        self.conn.executemany(
            "insert into base_events values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i, kind, title, self.source.local(starts), self.source.local(ends), place, theme,
              audience, status) for i, kind, title, starts, ends, place, theme, audience, status
             in rows],
        )  # fmt: skip

    def _help(self, live: sqlite3.Connection) -> None:
        assert self.conn is not None
        self.conn.execute("delete from base_help")
        rows = live.execute(
            "select message, received_at, sender, respondent, subject, answered_at, answered_by"
            " from help_requests"
        ).fetchall()
        self.conn.executemany(
            "insert into base_help values (?, ?, ?, ?, ?, ?, ?)",
            [(m, self.source.local(received), sender, respondent, subject,
              self.source.local(answered), by) for m, received, sender, respondent, subject,
             answered, by in rows],
        )  # fmt: skip


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` when the block raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _chunks(items: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _answer_columns(keys: tuple[str, ...]) -> list[str]:
    return [
        "message", "workflow", "occurrence", "respondent", "sender", "via", "day",
        "received_at", "received_local", "status", "text", *(section_column(k) for k in keys),
    ]  # fmt: skip


def _schema(keys: tuple[str, ...]) -> list[str]:
    sections = "".join(f", {quoted(section_column(k))} text" for k in keys)
    return [
        "create table base_meta (key text primary key, value text not null)",
        "create table base_respondents (id text primary key, defi text, name text not null,"
        " host text not null default '', kind text not null)",
        "create table base_answers (message integer primary key, workflow text not null,"
        " occurrence text not null, respondent text not null, sender text not null, via text,"
        " day text, received_at text not null, received_local text not null,"
        " status text not null, text text not null, superseded_by integer,"
        f" kept integer not null default 0{sections})",
        "create index base_answers_respondent on base_answers (respondent, workflow, day)",
        "create index base_answers_occurrence on base_answers (workflow, occurrence, respondent)",
        "create index base_answers_day on base_answers (workflow, day)",
        # External content: the text is stored once, in base_answers; accents are folded so
        # that "resolu" finds "résolu".
        "create virtual table base_answers_fts using fts5(text, content='base_answers',"
        " content_rowid='message', tokenize='unicode61 remove_diacritics 2')",
        "create table base_asked (workflow text not null, occurrence text not null, day text,"
        " respondent text not null, reminders integer not null default 0,"
        " primary key (workflow, occurrence, respondent))",
        "create index base_asked_day on base_asked (workflow, day)",
        "create table base_invitations (outbox integer primary key, event text not null,"
        " recipient text not null)",
        "create index base_invitations_event on base_invitations (event)",
        "create table base_participation (workflow text not null, occurrence text not null,"
        " day text, respondent text not null, answered integer not null,"
        " on_time integer not null, first_answer text, reminders integer not null,"
        " primary key (workflow, occurrence, respondent))",
        "create index base_participation_day on base_participation (workflow, day)",
        "create table base_events (id text primary key, kind text not null, title text not null,"
        " starts text, ends text, place text, theme text, audience text, status text)",
        "create table base_help (message integer primary key, received text, sender text,"
        " respondent text, subject text, answered_at text, answered_by text)",
    ]
