"""The store: WAL mode and append-only migrations, each recorded once."""

from __future__ import annotations

import pytest

from mailflow.store.db import applied_migrations, apply_migrations, open_db, transaction
from mailflow.store.migrations import MIGRATIONS


def test_migrations_are_recorded_once_in_order(tmp_path):
    db = open_db(tmp_path / "m.db")
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]
    assert apply_migrations(db) == []
    db.close()
    again = open_db(tmp_path / "m.db")
    assert applied_migrations(again) == [name for name, _ in MIGRATIONS]
    assert again.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_migration_names_are_unique_and_ordered():
    names = [name for name, _ in MIGRATIONS]
    assert len(names) == len(set(names))
    assert names == sorted(names)


def test_transaction_rolls_back_everything_on_error(tmp_path):
    db = open_db(tmp_path / "t.db")
    with pytest.raises(RuntimeError), transaction(db):
        db.execute("insert into folders (name, uidvalidity) values ('INBOX', 1)")
        raise RuntimeError("boom")
    assert db.execute("select count(*) from folders").fetchone()[0] == 0
