"""The web archive: the derived database, what ``mailflow serve`` shows, and to whom.

Answers come from real mail (swaks, as Gmail and Outlook write it) through real ticks;
``mailflow serve`` runs as a process on a loopback port and is asked over HTTP. The
browser's view of the same is in ``test_archive_browser.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import hashlib
import io
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailflow.archive.serve import build
from mailflow.archive.site import load_wording
from mailflow.cli import cli
from mailflow.config import load_config
from mailflow.errors import ConfigError
from mailflow.localmail import clients
from mailflow.store.archive import Archive, ArchiveError, open_live

from .archive_support import ACCOUNTS, FRIDAY, SECRET, WORD, Served, answered_friday, at
from .conftest import ENV
from .test_daemon import Daemon, count, eventually, paris


def _archive(config) -> Archive:
    archive, live, _ = build(config, load_wording(config))
    live.close()
    return archive


def _with_generated_secret(database: Path) -> None:
    """The state of a site that never configured a secret: mailflow keeps one in the database."""
    with sqlite3.connect(database) as conn:
        conn.execute("insert into settings (key, value) values ('token_secret', ?)", [SECRET])


def _file_bytes(path: Path) -> bytes:
    return b"".join(
        Path(f"{path}{s}").read_bytes() for s in ("", "-wal") if Path(f"{path}{s}").exists()
    )


@pytest.fixture
def friday(programme):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    answered_friday(p)
    _with_generated_secret(p.config.database)
    return p


def test_the_archive_holds_answers_but_no_secret_raw_mail_or_internal_table(friday):
    archive = _archive(friday.config)
    archive.close()
    data = _file_bytes(friday.config.archive.database)
    assert WORD.encode() in data
    with sqlite3.connect(friday.config.database) as live:
        message_ids = [r[0] for r in live.execute("select message_id from messages")]
        subjects = [r[0] for r in live.execute("select subject from outbox")]
    assert SECRET.encode() not in data
    # Headers exist only in the raw mail; subjects only in the outbox.
    assert message_ids and not any(m.encode() in data for m in message_ids if m)
    assert subjects and not any(s.encode() in data for s in subjects)
    with sqlite3.connect(friday.config.archive.database) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert all(t.startswith("base_") for t in tables), tables


def test_answers_corrections_needs_and_participation(friday):
    archive = _archive(friday.config)
    conn = archive.conn
    rows = conn.execute(
        "select respondent, kept, superseded_by, x_victories, x_needs, received_local"
        " from base_answers order by message"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("d-alpha", 0), ("d-beta", 1), ("d-alpha", 1)]
    first, _, correction = conn.execute("select message from base_answers order by message")
    assert rows[0][2] == correction[0]  # the first answer of alpha is replaced by the second
    assert "une démo" in rows[2][3] and rows[2][4] == "un juriste"
    assert rows[1][5].startswith("2026-") and len(rows[1][5]) == 16  # local, to the minute
    participation = dict(conn.execute(
        "select respondent, answered from base_participation where workflow = 'retro'"
    ).fetchall())  # fmt: skip
    assert participation == {"d-alpha": 1, "d-beta": 1, "d-gamma": 0}
    # The views, in French: the kept answer of alpha, accents folded in search.
    (kept,) = conn.execute(
        'select "victoires" from "reponses_retro" where "identifiant" = ? and "retenue" = ?',
        ["alpha", "oui"],
    ).fetchall()
    assert "une démo" in kept[0]
    found = conn.execute(
        "select rowid from base_answers_fts where base_answers_fts match 'elephantesque'"
    ).fetchall()
    assert {r[0] for r in found} == {first[0], correction[0]}
    assert conn.execute('select "défi" from "besoins"').fetchall() == [("Alpha",)]
    archive.close()


def test_a_refresh_adds_what_arrived_and_changes_nothing_twice(friday):
    archive = _archive(friday.config)
    live = open_live(friday.config.database)
    assert not archive.refresh(live).changed
    g0 = friday.defis["gamma"][0]
    friday.swaks(
        clients.gmail(friday.localmail.fetch(g0)[0], g0, "Gus", "Besoins :\nune salle"), g0
    )
    friday.wait_shared(4)
    friday.tick(at("12:00"))
    done = archive.refresh(live)
    assert done.answers_added == 1
    participation = archive.conn.execute(
        "select answered from base_participation where respondent = 'd-gamma'"
    ).fetchone()
    assert participation == (1,)
    assert archive.conn.execute(
        "select count(*) from base_answers_fts where base_answers_fts match 'salle'"
    ).fetchone() == (1,)
    assert not archive.refresh(live).changed
    archive.close()


def test_a_missing_or_foreign_database_is_one_clear_line(tmp_path):
    with pytest.raises(ArchiveError, match="no database at"):
        open_live(tmp_path / "nothing.db")
    (tmp_path / "other.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ArchiveError, match="cannot be read as a mailflow database"):
        open_live(tmp_path / "other.db")


def test_archive_settings_and_logins_from_the_environment(make_config, tmp_path):
    config = make_config()
    archive = config.archive
    assert (archive.host, archive.port, archive.base_url) == ("127.0.0.1", 8001, "/")
    assert archive.database == config.database.with_name("mailflow-archive.db")
    with pytest.raises(ConfigError, match="MAILFLOW_ARCHIVE_PASSWORDS to hold the staff"):
        archive.require_accounts()
    loaded = load_config(config.path, {**ENV, **ACCOUNTS})
    assert sorted(loaded.archive.require_accounts()) == ["raphaelle", "soizic"]
    assert "pbkdf2" not in repr(loaded)
    broken = load_config(config.path, {**ENV, "MAILFLOW_ARCHIVE_PASSWORDS": "soizic:secret"})
    with pytest.raises(ConfigError, match="name:pbkdf2_sha256"):
        broken.archive.require_accounts()
    for key, value in (("base_url", "archive"), ("database", "mailflow.db"), ("refresh", "0s")):
        (tmp_path / key).mkdir()  # its database is mailflow.db there, the archive's must differ
        with pytest.raises(ConfigError, match=f"archive.{key}"):
            make_config(tmp_path / key, archive={key: value})


def test_serve_without_logins_says_so_and_starts_nothing(friday):
    result = CliRunner().invoke(cli, ["-c", str(friday.config.path), "serve"], env=ENV)
    assert result.exit_code == 2
    assert "MAILFLOW_ARCHIVE_PASSWORDS" in result.output
    assert not friday.config.archive.database.exists()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _settled(database: Path) -> tuple[str, int]:
    """The live database with its WAL folded in: any write after this lands in the WAL."""
    gc.collect()  # connections the ticks left open in this process close (and checkpoint) now
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = Path(f"{database}-wal")
    return _sha(database), wal.stat().st_size if wal.exists() else 0


@pytest.fixture
def served(friday, tmp_path):
    before = _settled(friday.config.database)
    assert before[1] == 0
    server = Served(friday.config.path, tmp_path / "serve.log")
    yield friday, server
    assert server.stop() == 0
    wal = Path(f"{friday.config.database}-wal")
    after = _sha(friday.config.database), wal.stat().st_size if wal.exists() else 0
    assert after == before, "serving wrote to the live database"


PAGES = [
    "/", "/archive", "/archive/reponses_retro", "/archive/reponses_retro.json",
    "/archive/reponses_retro.csv", "/archive/historique_d_un_defi.csv?défi=alpha",
    "/archive/base_answers.json", "/archive.json?sql=select+1", "/-/metadata.json",
    "/-/password-tool", "/-/versions.json", "/archive.db",
]  # fmt: skip


def test_nothing_is_shown_without_a_login(served):
    _, server = served
    anonymous = server.client(login=False)
    for page in PAGES:
        answer = anonymous.get(page)
        assert answer.status_code in (302, 404), page
        assert WORD not in answer.text and "Alpha" not in answer.text, page
        if answer.status_code == 302:
            assert answer.headers["location"] == "/-/login"
    assert anonymous.get("/-/login").status_code == 200
    wrong = server.client(login=False)
    page = wrong.get("/-/login").text
    token = page.split('name="csrftoken" value="')[1].split('"')[0]
    refused = wrong.post("/-/login", data={"username": "soizic", "password": "non",
                                           "csrftoken": token})  # fmt: skip
    assert "Identifiant ou mot de passe incorrect." in refused.text
    assert wrong.get("/archive").status_code == 302


def test_the_staff_search_browse_and_download(served):
    _, server = served
    staff = server.client()
    found = staff.get("/archive/reponses_retro.json", params={
        "_search": "elephantesque", "retenue": "oui", "_shape": "objects",
    }).json()["rows"]  # fmt: skip
    assert [r["défi"] for r in found] == ["Alpha"] and "une démo" in found[0]["victoires"]
    history = staff.get("/archive/historique_d_un_defi.csv", params={"défi": "Alpha"})
    assert history.status_code == 200 and history.text.startswith("n°,défi,identifiant,semaine")
    weeks = list(csv.DictReader(io.StringIO(history.text)))
    assert len(weeks) == 1 and "une démo" in weeks[0]["victoires"]  # the kept answer only
    needs = staff.get("/archive/besoins_des_quatre_dernieres_semaines.json?_shape=objects")
    recent = dt.date.today() - dt.timedelta(days=28) <= dt.date.fromisoformat(FRIDAY)
    assert [r["défi"] for r in needs.json()["rows"]] == (["Alpha"] if recent else [])
    missing = staff.get("/archive/sans_reponse_cette_semaine.json?_shape=objects").json()
    assert [r["défi"] for r in missing["rows"]] == ["Gamma"]
    page = staff.get("/archive/reponses_retro").text
    assert "Réponses — Rétrospective hebdomadaire" in page
    assert "la réponse que le récapitulatif montre" in page  # the column « retenue »


def test_the_secret_and_internal_tables_are_unreachable_even_by_sql(served):
    _, server = served
    staff = server.client()
    for table in ("settings", "messages", "outbox", "parsed", "inbound", "_migrations"):
        assert staff.get(f"/archive/{table}").status_code == 404, table
        answer = staff.get("/archive.json", params={"sql": f"select * from {table}"})
        assert answer.status_code == 400 and "no such table" in answer.text, table
    listed = staff.get("/archive.json", params={
        "sql": "select group_concat(name) from sqlite_master", "_shape": "array",
    }).text  # fmt: skip
    assert "settings" not in listed and "messages" not in listed and "base_answers" in listed
    for attempt in ("attach database 'mailflow.db' as live", "select load_extension('x')",
                    "pragma table_list"):  # fmt: skip
        assert SECRET not in staff.get("/archive.json", params={"sql": attempt}).text
    for page in ("/-/metadata.json", "/-/databases.json", "/-/settings.json", "/-/plugins.json"):
        answer = staff.get(page)
        assert answer.status_code == 404 and "pbkdf2" not in answer.text, page
    everything = staff.get("/archive/reponses_retro.json?_shape=array&_size=max").text
    assert SECRET not in everything


def test_serve_works_beside_the_running_daemon(programme, tmp_path):
    p = programme({"alpha": 1, "beta": 1}, archive={"refresh": "1s"})
    clock = p.config.path.parent / "clock"
    from mailflow.running.clock import FileClock

    FileClock.set(clock, paris("2026-11-27", "09:00"))
    daemon = Daemon(p.config.path, tmp_path / "daemon.log", "--clock-file", str(clock),
                    "--heartbeat", "0.2").wait_ready()  # fmt: skip
    try:
        eventually(lambda: count(p.config.database, "select count(*) from outbox") >= 2,
                   what="requests queued")  # fmt: skip
        server = Served(p.config.path, tmp_path / "serve.log")
        staff = server.client()
        rows = lambda: staff.get("/archive/reponses_retro.json?_shape=array").json()  # noqa: E731
        assert rows() == []
        a0 = p.defis["alpha"][0]
        p.localmail.wait_for(a0, 1)
        p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice", f"Victoires :\n{WORD}"), a0)
        eventually(lambda: len(rows()) == 1, 20, "the answer in the archive")
        assert rows()[0]["victoires"] == WORD
        assert server.stop() == 0
    finally:
        assert daemon.stop() == 0


def test_the_archive_in_english(programme, tmp_path):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1}, mailflow={"language": "en"})
    answered_friday(p)
    server = Served(p.config.path, tmp_path / "serve.log")
    try:
        staff = server.client()
        found = staff.get("/archive/answers_retro.json?_search=elephantesque&kept=yes&_shape=array")
        assert [r["defi"] for r in found.json()] == ["Alpha"]
        assert staff.get("/archive/defi_history.json?defi=alpha").status_code == 200
        assert "Log in to the archive" in server.client(login=False).get("/-/login").text
    finally:
        assert server.stop() == 0


def test_the_benchmark_runs_small(tmp_path):
    """bench/archive.py --small: the smoke run CI can afford; its one line has both figures."""
    import subprocess
    import sys

    from .conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "archive.py"), "--small", "-n", "3"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "archive of 520 answers" in result.stdout and "search median" in result.stdout
