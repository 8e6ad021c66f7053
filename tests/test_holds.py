"""Right mail or no mail: what mailflow does when it cannot be sure, against the real servers.

A tick that could not read the mailbox holds the steps whose mail depends on the answers;
a week whose request never went out gets no reminder and no digest; a real install
refuses to act in the future, and a dry run shows what would go without changing anything.
"""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import shutil
import sqlite3

from click.testing import CliRunner

from mailflow.cli import cli
from mailflow.localmail import clients

from .conftest import ENV, ROOT, text_of
from .test_retro import at

FRIDAY = "2026-11-27"


def run(p, *args, env=None):
    return CliRunner().invoke(cli, ["-c", str(p.config.path), *args], env=env or ENV)


def notices(p):
    """The staff's notices, as the first staff member received them."""
    return [m for m in p.inbox(p.staff[0]) if "mailflow" in str(m["Subject"]).lower()]


def test_a_wrong_imap_password_holds_the_reminder_until_the_mailbox_is_read(programme):
    p = programme({"alpha": 1, "beta": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    request = p.localmail.fetch(a0)[0]
    p.swaks(clients.gmail(request, a0, "Alice", "Victoires :\nla V1\n\nBesoins :\nrien"), a0)
    p.wait_shared(1)

    wrong = {**ENV, "MAILFLOW_IMAP_PASSWORD": "wrong"}
    result = run(p, "tick", "--at", at("12:00"), env=wrong)
    assert result.exit_code == 1
    assert "the mailbox could not be read" in result.output
    assert "held" in result.output
    # Neither défi is reminded: alpha's answer is in the mailbox, unread.
    assert [len(p.inbox(p.defis[d][0])) for d in ("alpha", "beta")] == [1, 1]
    [notice] = notices(p)
    assert "login refused" in text_of(notice) or "LOGIN" in text_of(notice)
    assert "d-alpha" not in text_of(notice) and "retro:" not in text_of(notice)
    # Ticking blind again does not tell the staff twice.
    assert run(p, "tick", "--at", at("12:10"), env=wrong).exit_code == 1
    assert len(notices(p)) == 1

    # The next good tick within the grace reads alpha's answer, then reminds beta only.
    p.tick(at("12:30"))
    assert len(p.inbox(p.defis["beta"][0])) == 2
    alpha = p.inbox(a0)
    assert len(alpha) == 2 and "Rappel" not in str(alpha[1]["Subject"])  # the receipt


def test_a_blind_tick_past_the_grace_skips_the_step_and_says_why(programme):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    wrong = {**ENV, "MAILFLOW_IMAP_PASSWORD": "wrong"}
    assert run(p, "tick", "--at", at("12:00"), env=wrong).exit_code == 1
    assert run(p, "tick", "--at", at("13:45"), env=wrong).exit_code == 1  # past 1h30 grace
    p.tick(at("13:50"))
    assert len(p.inbox(p.defis["alpha"][0])) == 1  # never reminded by guess
    status = p.run("status", "--week", "2026-W48").output
    assert "reminder-1 : pas faite : la boîte n'a pas pu être lue à temps" in status
    texts = [text_of(m) for m in notices(p)]
    assert len(texts) == 2  # held at 12:00, given up at 13:45
    assert "Pas envoyé" in texts[1]


def test_a_missing_password_is_an_error_at_start_up(programme):
    p = programme({"alpha": 1})
    env = {k: v for k, v in ENV.items() if k != "MAILFLOW_IMAP_PASSWORD"}
    for args in (("tick", "--at", at("09:00")), ("ingest",), ("run", "--once")):
        result = run(p, *args, env=env)
        assert result.exit_code == 2, args
        assert "MAILFLOW_IMAP_PASSWORD" in result.output, args
    assert len(p.inbox(p.defis["alpha"][0])) == 0


def test_after_a_long_downtime_missed_weeks_get_no_digest_and_the_staff_one_summary(programme):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    for time in ("09:00", "12:00", "14:00", "15:00"):
        p.tick(f"2026-12-04T{time}:00+01:00")
    cohort = p.config.addresses.cohort
    assert len(p.inbox(cohort)) == 1
    before = {m: len(p.inbox(m)) for members in p.defis.values() for m in members}

    p.tick("2027-01-04T10:00:00+01:00")  # a Monday, after the holidays
    assert len(p.inbox(cohort)) == 1  # no digest for W52 or W53
    assert {m: len(p.inbox(m)) for m in before} == before  # no reminder either
    staff = [m for m in p.inbox(p.staff[0]) if "mailflow" in str(m["Subject"]).lower()]
    assert len(staff) == 1
    summary = text_of(staff[0])
    # One line per week (the holiday-moved Fridays), saying what did not go and why.
    assert "jeudi 24 décembre : la demande de 9h, le rappel de 12h" in summary
    assert "jeudi 31 décembre : la demande de 9h" in summary
    assert "mailflow ne fonctionnait pas à 9h" in summary
    db = sqlite3.connect(p.config.database)
    runs = dict(
        db.execute(
            "select occurrence || ' ' || step, reason from runs"
            " where workflow = 'retro' and occurrence in ('2026-W52', '2026-W53')"
        ).fetchall()
    )
    assert runs["2026-W52 request"] == "missed" and runs["2026-W52 digest"] == "not_asked"
    assert runs["2026-W53 reminder-1"] == "not_asked"


def test_an_install_after_the_request_sends_no_reminder_nor_digest_that_week(programme):
    p = programme({"alpha": 1})
    p.tick(at("13:00"))  # first tick: the 09:00 request is history
    p.tick(at("14:00"))
    p.tick(at("15:00"))
    assert len(p.inbox(p.defis["alpha"][0])) == 0
    assert len(p.inbox(p.config.addresses.cohort)) == 0
    assert notices(p) == []  # history is not news


def test_a_real_install_refuses_a_future_instant(programme):
    p = programme({"alpha": 1}, mailflow={"rehearsal": False})
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()
    result = run(p, "tick", "--at", ahead)
    assert result.exit_code == 1
    assert "in the future" in result.output and "rehearsal" in result.output
    assert len(result.output.strip().splitlines()) == 1
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from outbox").fetchone()[0] == 0
    assert len(p.inbox(p.defis["alpha"][0])) == 0


def _checksum(path):
    """A digest of every row of every table: the database as mailflow sees it."""
    db = sqlite3.connect(path)
    digest = hashlib.sha256()
    tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
    for table in sorted(tables):
        for row in db.execute(f"select * from {table} order by rowid"):
            digest.update(repr(row).encode())
    db.close()
    return digest.hexdigest()


def test_a_dry_run_writes_the_mail_and_changes_nothing(programme, tmp_path):
    p = programme({"alpha": 2, "beta": 1}, mailflow={"rehearsal": False})
    a0 = p.defis["alpha"][0]
    run(p, "status")  # creates the database
    raw = (
        f"From: Alice <{a0}>\r\nTo: {p.shared}\r\nSubject: Une question\r\n"
        "Message-ID: <question.1@alpha.test>\r\n\r\nBonjour, une question.\r\n"
    )
    p.localmail.send(raw.encode(), [p.shared], a0)
    p.wait_shared(1)
    before = _checksum(p.config.database)
    friday = dt.date.today() + dt.timedelta(days=(4 - dt.date.today().weekday()) % 7 or 7)
    out = tmp_path / "eml"
    result = run(p, "tick", "--dry-run", "--at", f"{friday}T09:00", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.eml"))
    assert len(files) == 2  # one request per défi
    assert "nothing was changed" in result.output
    assert a0 in result.output and "Subject" not in result.output
    written = email.message_from_bytes(files[0].read_bytes())
    assert written["Message-ID"].strip().startswith("<retro.2026-W")
    nine = dt.datetime.combine(friday, dt.time(9), tzinfo=p.config.timezone)
    assert written["Date"].endswith(nine.strftime("09:00:00 %z"))  # local time, not UTC
    assert _checksum(p.config.database) == before
    assert all(len(p.inbox(m)) == 0 for members in p.defis.values() for m in members)


def _own_templates(p, tmp_path, name, edit):
    """A copy of the shipped templates with one edited, used by this programme."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", folder)
    path = folder / name
    path.write_text(edit(path.read_text()))
    text = p.config.path.read_text().replace(
        "[mailflow]\n", f'[mailflow]\ntemplates = "{folder}"\n'
    )
    p.config.path.write_text(text)


def test_an_undefined_template_variable_stops_mailflow_at_start_up(programme, tmp_path):
    p = programme({"alpha": 1})
    # Used only when the reminder is late: rendering a normal one would never reach it.
    _own_templates(p, tmp_path, "retro/reminder.fr.txt.j2",
                   lambda t: t + "{% if late %}{{ oublie }}{% endif %}\n")  # fmt: skip
    result = run(p, "tick", "--at", at("09:00"))
    assert result.exit_code == 1
    assert "retro/reminder.fr.txt.j2" in result.output and "'oublie'" in result.output
    assert len(p.inbox(p.defis["alpha"][0])) == 0
    doctor = run(p, "doctor").output
    assert "FAIL" in doctor and "'oublie'" in doctor


def test_a_step_that_fails_at_send_time_is_told_once_then_given_up(programme, tmp_path):
    p = programme({"alpha": 1, "beta": 1})
    # Renders with the sample answers of the preflight, fails when nobody answered.
    divide = "{{ asked // answered }} Bonjour"
    _own_templates(p, tmp_path, "retro/digest.fr.txt.j2", lambda t: t.replace("Bonjour", divide))
    for time in ("09:00", "12:00", "14:00"):
        p.tick(at(time))
    for time in ("15:00", "15:05", "16:00"):
        result = run(p, "tick", "--at", at(time))
        assert result.exit_code == 1 and "ZeroDivisionError" in result.output
    texts = [text_of(m) for m in notices(p)]
    assert len(texts) == 1 and "Impossible à préparer" in texts[0]
    assert "ZeroDivisionError" in texts[0]
    # Past the digest's grace of 3 hours: given up, and said so.
    assert (
        "could not be prepared until past its grace" in run(p, "tick", "--at", at("18:05")).output
    )
    assert len(p.inbox(p.config.addresses.cohort)) == 0
    texts = [text_of(m) for m in notices(p)]
    assert len(texts) == 2 and "n'a pas pu être préparé à temps" in texts[1]


def test_human_mail_nobody_else_reads_is_listed_to_the_staff_once(programme, new_address):
    p = programme({"alpha": 1, "beta": 1})
    for time in ("09:00", "12:00", "14:00", "15:00"):
        p.tick(at(time))
    cohort = p.config.addresses.cohort
    digest = p.localmail.fetch(cohort)[0]
    p.swaks(clients.gmail(digest, cohort, "Une Lectrice", "Merci pour ce récapitulatif !"), cohort)
    stranger = new_address("inconnu")
    p.swaks(
        f"From: Inconnu <{stranger}>\r\nTo: {p.shared}\r\nSubject: Candidature spontanée\r\n"
        f"Message-ID: <cand.1@x.test>\r\n\r\nBonjour, je voudrais candidater.\r\n".encode(),
        stranger,
    )
    outsider = new_address("collegue")
    request = p.localmail.fetch(p.defis["alpha"][0])[0]
    p.swaks(clients.gmail(request, outsider, "Un Collègue", "Victoires :\nsans moi"), outsider)
    p.wait_shared(3)
    p.tick("2026-11-30T09:30:00+01:00")  # Monday: the desk's daily mail
    desk = [m for m in p.inbox(p.staff[0]) if "en attente" in str(m["Subject"])]
    assert len(desk) == 1
    text = text_of(desk[0])
    assert "Candidature spontanée" in text and stranger in text
    assert "Re:" in text and cohort in text  # the reply to the digest
    assert outsider in text and "Alpha" in text  # the non-member's answer for alpha
    status = p.run("status", "--week", "2026-W48").output
    assert status.count(", de ") == 3 and "pas encore signalé" not in status  # the three to read
    p.tick("2026-12-01T09:30:00+01:00")
    assert len([m for m in p.inbox(p.staff[0]) if "en attente" in str(m["Subject"])]) == 1


def test_the_digest_closes_with_words_that_fit_the_day_it_is_sent(programme):
    p = programme({"alpha": 1})
    for day in ("2026-12-18", "2026-12-24"):  # a Friday; the Thursday before Christmas
        for time in ("09:00", "12:00", "14:00", "15:00"):
            p.tick(at(time, day))
    friday, thursday = (text_of(m) for m in p.inbox(p.config.addresses.cohort))
    assert "Bon week-end" in friday
    assert "Bon week-end" not in thursday and "Bonne fin de semaine" in thursday
