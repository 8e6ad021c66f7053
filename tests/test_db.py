"""The store: WAL mode and append-only migrations, each recorded once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def test_a_database_this_user_cannot_write_is_one_line_naming_its_owner():
    """As after a first command run as root: the service's user gets a fix, not a failed
    write in the middle of a tick."""
    root = Path(tempfile.mkdtemp(prefix="mailflow-owner-"))  # pytest's own is root's only
    try:
        root.chmod(0o755)
        folder, open_folder = root / "state", root / "open"
        for made in (folder, open_folder):
            open_db(made / "mailflow.db").close()  # made by root: 644
        open_folder.chmod(0o777)  # a folder anyone may write, the file still root's
        program = (
            "import sys; from mailflow.errors import StoreError\n"
            "from mailflow.store.db import open_db\n"
            "try: open_db(sys.argv[1])\n"
            "except StoreError as e: print(e); sys.exit(3)\n"
        )
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        said = {}
        for target in (folder / "mailflow.db", open_folder / "mailflow.db", folder / "new/m.db"):
            done = subprocess.run(
                [*as_nobody, sys.executable, "-c", program, str(target)],
                capture_output=True, text=True, check=False, cwd=root,
            )  # fmt: skip
            assert done.returncode == 3, done.stderr
            assert done.stdout.count("\n") == 1, done.stdout
            said[target] = done.stdout
        in_folder, in_open, new = said.values()
        assert f"{folder} is owned by root and cannot be written by nobody" in in_folder
        assert f"(chown -R mailflow:mailflow {folder})" in in_folder
        assert f"{open_folder}/mailflow.db is owned by root and cannot be written" in in_open
        assert f"cannot create the database's folder {folder}/new" in new
    finally:
        shutil.rmtree(root)
