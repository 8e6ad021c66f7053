"""Queries of the people the roster names, as stored: défis and their members, the staff,
the mentors."""

from __future__ import annotations

from .db import Database


def clear_roster(db: Database) -> None:
    """Forget every défi, member, staff member and mentor (before storing a new roster)."""
    db.execute("delete from members")
    db.execute("delete from defis")
    db.execute("delete from staff")
    db.execute("delete from mentors")


def add_defi(
    db: Database, defi_id: str, name: str, host: str, language: str | None,
    active_from: str | None, active_until: str | None,
) -> None:  # fmt: skip
    db.execute(
        "insert into defis (id, name, host, language, active_from, active_until)"
        " values (?, ?, ?, ?, ?, ?)",
        [defi_id, name, host, language, active_from, active_until],
    )


def add_member(db: Database, defi_id: str, address: str, name: str) -> None:
    db.execute(
        "insert or ignore into members (defi, address, name) values (?, ?, ?)",
        [defi_id, address, name],
    )


def add_staff(db: Database, address: str, name: str, role: str) -> None:
    db.execute(
        "insert or replace into staff (address, name, role) values (?, ?, ?)",
        [address, name, role],
    )


def add_mentor(db: Database, address: str, name: str, defis: str) -> None:
    """A mentor, with the ids of the défis they follow, comma-separated."""
    db.execute(
        "insert or replace into mentors (address, name, defis) values (?, ?, ?)",
        [address, name, defis],
    )


def defis(
    db: Database,
) -> list[tuple[str, str, str, str | None, str | None, str | None]]:
    """(id, name, host, language, active_from, active_until) of every défi, by name."""
    return db.execute(
        "select id, name, host, language, active_from, active_until from defis order by name"
    ).fetchall()


def members(db: Database) -> list[tuple[str, str, str]]:
    """(défi, address, name) of every member, by défi and address."""
    return db.execute("select defi, address, name from members order by defi, address").fetchall()


def staff(db: Database) -> list[tuple[str, str, str]]:
    """(address, name, role) of every staff member, by name."""
    return db.execute("select address, name, role from staff order by name").fetchall()


def mentors(db: Database) -> list[tuple[str, str, str]]:
    """(address, name, défi ids comma-separated) of every mentor, by name."""
    return db.execute("select address, name, defis from mentors order by name").fetchall()


def staff_addresses(db: Database) -> list[str]:
    return [row[0] for row in db.execute("select address from staff order by address")]


def defis_of(db: Database, address: str) -> list[str]:
    """The défis an address is a member of."""
    rows = db.execute("select defi from members where address = ?", [address.lower()])
    return [row[0] for row in rows]


def addresses_of(db: Database, defi_id: str) -> set[str]:
    """The addresses of a défi's members."""
    rows = db.execute("select address from members where defi = ?", [defi_id])
    return {row[0] for row in rows}


def is_staff(db: Database, address: str) -> bool:
    row = db.execute("select 1 from staff where address = ?", [address.lower()]).fetchone()
    return row is not None
