"""The roster: the défis (teams) with their members, and the staff team.

Read from a TOML file named in the config (``[mailflow] roster``) and kept in SQLite,
where every other module looks people up. The file format::

    [[defi]]
    id = "bulletins"                      # letters, digits, dashes: used in Message-IDs
    name = "Bulletins"
    host = "DINUM"                        # host organisation
    members = ["Camille Martin <camille.martin@bulletins.test>", "hugo@bulletins.test"]
    language = "fr"                       # optional, default: the config's language
    active_from = 2026-09-01              # optional
    active_until = 2027-06-30             # optional

    [[staff]]
    name = "Soizic Pénicaud"
    address = "soizic@programme.test"
    role = "Responsable du programme"

    [[mentor]]                            # optional: invited to events for mentors
    name = "Jean Dupuis"
    address = "jean.dupuis@mentors.test"
    defis = ["bulletins"]

Addresses are compared without case. An address may belong to several défis (a
mentor): a message from it is then never attributed by membership alone.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..store import people, schedule
from ..store.db import Database, transaction
from ..store.outgoing import lift_unlisted
from ..store.states import Respondent
from ..tomltable import ADDRESS, ID, LANGUAGE, Table


@dataclass(frozen=True)
class Member:
    address: str
    name: str = ""


@dataclass(frozen=True)
class Defi:
    """A team answering the workflows, with the addresses that speak for it."""

    id: str
    name: str
    host: str = ""
    members: tuple[Member, ...] = ()
    language: str | None = None
    active_from: dt.date | None = None
    active_until: dt.date | None = None

    def active_on(self, day: dt.date) -> bool:
        return (self.active_from is None or self.active_from <= day) and (
            self.active_until is None or day <= self.active_until
        )

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(m.address for m in self.members)


@dataclass(frozen=True)
class Staff:
    address: str
    name: str = ""
    role: str = ""


@dataclass(frozen=True)
class Mentor:
    address: str
    name: str = ""
    defis: tuple[str, ...] = ()


@dataclass(frozen=True)
class Roster:
    defis: tuple[Defi, ...] = ()
    staff: tuple[Staff, ...] = ()
    mentors: tuple[Mentor, ...] = ()

    def audience(self, name: str, day: dt.date | None = None) -> list[tuple[str, str]]:
        """(address, name) of everyone in an event audience: entrepreneurs, mentors,
        staff, or everyone (all three), each address once."""
        people: dict[str, str] = {}
        if name in ("entrepreneurs", "everyone"):
            for d in self.defis:
                if day is None or d.active_on(day):
                    people.update((m.address, m.name) for m in d.members)
        if name in ("mentors", "everyone"):
            people.update((m.address, m.name) for m in self.mentors)
        if name in ("staff", "everyone"):
            people.update((s.address, s.name) for s in self.staff)
        return sorted(people.items())

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), default=str).encode()).hexdigest()


def _member(t: Table, key: str, value: str) -> Member:
    pairs = email.utils.getaddresses([value])
    if len(pairs) != 1 or not _valid(pairs[0][1]):
        t.fail(key, "ASCII addresses such as 'Camille Martin <camille@example.test>'", value)
    name, address = pairs[0]
    return Member(address.lower(), name)


def _valid(address: str) -> bool:
    # ASCII only: an address SMTP cannot carry without SMTPUTF8 would fail at every send.
    return address.isascii() and bool(re.fullmatch(ADDRESS.regex, address))


def load_roster(path: Path) -> Roster:
    """Read and check a roster file; a wrong value is a ``ConfigError`` naming it."""
    root = Table.from_file(path)
    defis = []
    seen: set[str] = set()
    for t in root.tables("defi"):
        defi_id = t.string("id", pattern=ID)
        t.identify(defi_id)
        if defi_id in seen:
            t.fail("id", "an id used by no other [[defi]]", defi_id)
        seen.add(defi_id)
        members = tuple(_member(t, "members", m) for m in t.strings("members", ()))
        defis.append(
            Defi(
                id=defi_id,
                name=t.string("name"),
                host=t.string("host", ""),
                members=members,
                language=t.string("language", None, pattern=LANGUAGE),
                active_from=t.date("active_from", None),
                active_until=t.date("active_until", None),
            )
        )
        t.done()
    staff = []
    for t in root.tables("staff"):
        address = t.string("address")
        if not _valid(address):
            t.fail("address", "an ASCII email address", address)
        staff.append(Staff(address.lower(), t.string("name", ""), t.string("role", "")))
        t.done()
    mentors = []
    for t in root.tables("mentor"):
        address = t.string("address")
        if not _valid(address):
            t.fail("address", "an ASCII email address", address)
        followed = t.strings("defis", ())
        unknown = [d for d in followed if d not in seen]
        if unknown:
            t.fail("defis", "ids of [[defi]] tables of this roster", unknown)
        mentors.append(Mentor(address.lower(), t.string("name", ""), followed))
        t.done()
    root.done()
    return Roster(tuple(defis), tuple(staff), tuple(mentors))


def sync_roster(db: Database, roster: Roster) -> bool:
    """Make the stored roster the given one; returns False when nothing changed.

    Suppressed addresses the new roster does not list are mailed again.
    """
    digest = roster.digest()
    if schedule.setting(db, "roster_digest") == digest:
        return False
    with transaction(db):
        people.clear_roster(db)
        for mentor in roster.mentors:
            people.add_mentor(db, mentor.address, mentor.name, ",".join(mentor.defis))
        for d in roster.defis:
            people.add_defi(db, d.id, d.name, d.host, d.language, _iso(d.active_from),
                            _iso(d.active_until))  # fmt: skip
            for m in d.members:
                people.add_member(db, d.id, m.address, m.name)
        for s in roster.staff:
            people.add_staff(db, s.address, s.name, s.role)
        # An address the roster no longer lists was corrected or removed: mail it again
        # if it comes back.
        lift_unlisted(db)
        schedule.set_setting(db, "roster_digest", digest)
    return True


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def stored_roster(db: Database) -> Roster:
    """The roster as kept in the database."""
    members: dict[str, list[Member]] = {}
    for defi, address, name in people.members(db):
        members.setdefault(defi, []).append(Member(address, name))
    defis = tuple(
        Defi(
            row[0],
            row[1],
            row[2],
            tuple(members.get(row[0], [])),
            row[3],
            _date(row[4]),
            _date(row[5]),
        )
        for row in people.defis(db)
    )
    staff = tuple(Staff(*row) for row in people.staff(db))
    mentors = tuple(
        Mentor(row[0], row[1], tuple(filter(None, row[2].split(",")))) for row in people.mentors(db)
    )
    return Roster(defis, staff, mentors)


def respondent_addresses(db: Database, respondent: str) -> set[str]:
    """The addresses allowed to answer for a respondent."""
    defi_id = Respondent(respondent).defi_id
    if defi_id is not None:
        return people.addresses_of(db, defi_id)
    return {s.address for s in stored_roster(db).staff if Respondent.staff(s.address) == respondent}


def respondent_info(roster: Roster, respondent: str) -> dict[str, str]:
    """What templates show of a respondent: ``id``, ``name`` and ``host`` (or role)."""
    defi_id = Respondent(respondent).defi_id
    if defi_id is not None:
        for d in roster.defis:
            if d.id == defi_id:
                return {"id": d.id, "name": d.name, "host": d.host, "kind": "defi"}
    for s in roster.staff:
        if Respondent.staff(s.address) == respondent:
            return {"id": respondent, "name": s.name or s.address, "host": s.role, "kind": "staff"}
    return {"id": respondent, "name": respondent, "host": "", "kind": "unknown"}
