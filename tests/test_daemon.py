"""``mailflow run`` as a real process against real servers, with a clock the test moves.

Covers: one pass (--once), a second daemon refused, SIGTERM and a second signal, replies
ingested within seconds on IDLE, Dovecot restarted under the daemon, an SMTP server
answering 451 for a while, downtime caught up, the Fridays after each daylight saving
change, SIGKILL at random points of simulated weeks, and a new workflow file picked up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from mailflow.cli import cli
from mailflow.localmail import clients
from mailflow.running.clock import FileClock

from .conftest import ENV, ROOT, text_of

PARIS = ZoneInfo("Europe/Paris")


def paris(day: str, time_: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time_}").replace(tzinfo=PARIS)


def eventually(predicate: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout}s: {what}")
        time.sleep(0.05)


def count(database: Path, sql: str) -> int:
    try:
        with sqlite3.connect(database, timeout=30) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


class Daemon:
    """A ``mailflow run`` subprocess; its stderr goes to a log file."""

    started: ClassVar[list[Daemon]] = []  # killed when each test ends (see ``no_daemon_left``)

    def __init__(self, config_path: Path, log: Path, *args: str) -> None:
        command = [sys.executable, "-m", "mailflow", "-c", str(config_path), "run", *args]
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=out
            )
        Daemon.started.append(self)

    def wait_ready(self) -> Daemon:
        eventually(lambda: "mailflow running" in self.log.read_text(), what="daemon ready")
        return self

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM once the daemon runs (before that, nothing is there to stop cleanly)."""
        if self.process.poll() is None:
            self.wait_ready()
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture(autouse=True)
def no_daemon_left():
    """Kill the daemons a test left running (a failed assertion), so none works on after it."""
    yield
    while Daemon.started:
        d = Daemon.started.pop()
        if d.process.poll() is None:
            d.kill()


@pytest.fixture
def clocked(programme, tmp_path):
    """A programme and a file clock, and a way to start daemons on them."""

    def make(defis: dict[str, int], start: dt.datetime, **overrides):
        p = programme(defis, **overrides)
        folder = p.config.path.parent
        clock = folder / "clock"
        FileClock.set(clock, start)
        started: list[Daemon] = []

        def daemon(*args: str) -> Daemon:
            log = folder / f"daemon{len(started)}.log"
            d = Daemon(p.config.path, log, "--clock-file", str(clock), "--heartbeat", "0.2", *args)
            started.append(d)
            return d

        def move(moment: dt.datetime) -> None:
            FileClock.set(clock, moment)

        p.daemon, p.move, p.clock, p.started = daemon, move, clock, started
        return p

    yield make


def test_run_once_does_one_pass(clocked):
    p = clocked({"alpha": 1}, paris("2026-11-27", "09:00"))
    assert p.daemon("--once").process.wait(30) == 0
    assert len(p.inbox(p.defis["alpha"][0])) == 1


def test_logs_as_json_lines_when_asked(clocked):
    p = clocked({"alpha": 1}, paris("2026-11-27", "09:00"))
    d = p.daemon("--once", "--log-format", "json")
    assert d.process.wait(30) == 0
    lines = [json.loads(line) for line in d.log.read_text().splitlines()]
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    assert any("request: done" in line["message"] for line in lines)


def test_a_second_daemon_on_the_same_database_is_refused(clocked):
    p = clocked({"alpha": 1}, paris("2026-11-27", "08:00"))
    first = p.daemon().wait_ready()
    try:
        second = p.run("run", "--once")
        assert second.exit_code == 1
        assert f"another mailflow daemon (pid {first.process.pid}) is running" in second.output
    finally:
        assert first.stop() == 0


def test_sigterm_exits_cleanly_and_a_second_signal_at_once(clocked, localmail):
    p = clocked({"alpha": 1, "beta": 1}, paris("2026-11-27", "08:00"))
    d = p.daemon().wait_ready()
    assert d.stop() == 0
    assert "mailflow stopped" in d.log.read_text()

    # Stuck delivering (the SMTP server holds the session): SIGTERM waits for the step...
    stalled = localmail.smtp.stall(60, at="ehlo")
    try:
        p.move(paris("2026-11-27", "09:00"))
        d = p.daemon()
        assert stalled.wait(20)
        d.signal(signal.SIGTERM)
        time.sleep(1)
        assert d.process.poll() is None
        # ...a second signal exits at once, and nothing is damaged.
        d.signal(signal.SIGTERM)
        assert d.process.wait(5) == 128 + signal.SIGTERM
    finally:
        localmail.smtp.clear_failures()
    with sqlite3.connect(p.config.database) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    d = p.daemon()
    eventually(lambda: all(len(p.inbox(m[0])) == 1 for m in p.defis.values()), what="requests")
    assert d.stop() == 0
    assert all(len(p.inbox(m[0])) == 1 for m in p.defis.values())


def test_replies_are_ingested_within_seconds_on_idle(programme, tmp_path):
    p = programme({"alpha": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    d = Daemon(p.config.path, tmp_path / "daemon.log", "--heartbeat", "600").wait_ready()
    try:
        a0 = p.defis["alpha"][0]
        time.sleep(1)  # the daemon is idling now
        start = time.monotonic()
        p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nvite"), a0)
        eventually(lambda: count(p.config.database, "select count(*) from inbound") == 1, 10)
        assert time.monotonic() - start < 5
    finally:
        assert d.stop() == 0


def test_dovecot_restarted_under_the_daemon_loses_no_reply(programme, localmail, tmp_path):
    p = programme({"alpha": 2})
    p.tick("2026-11-27T09:00:00+01:00")
    d = Daemon(p.config.path, tmp_path / "daemon.log", "--heartbeat", "600").wait_ready()
    a0, a1 = p.defis["alpha"]
    try:
        p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\navant"), a0)
        eventually(lambda: count(p.config.database, "select count(*) from inbound") == 1)
        localmail.dovecot.stop()
        time.sleep(2)
        localmail.dovecot.start()
        p.swaks(clients.gmail(p.localmail.fetch(a1)[0], a1, "B", "Victoires :\naprès"), a1)
        eventually(lambda: count(p.config.database, "select count(*) from inbound") == 2, 30,
                   "the reply sent after the restart")  # fmt: skip
        assert "reconnecting" in d.log.read_text() or "cannot watch" in d.log.read_text()
    finally:
        assert d.stop() == 0
    assert count(p.config.database, "select count(*) from messages") == 2


def test_smtp_answering_451_for_a_while_delivers_everything_once(clocked, localmail):
    p = clocked({"alpha": 1, "beta": 1, "gamma": 1}, paris("2026-11-27", "09:00"))
    localmail.smtp.fail_next("451 4.3.2 System busy", times=5)
    d = p.daemon().wait_ready()
    try:
        for minute in ("09:01", "09:02", "09:07", "09:30", "10:30"):
            time.sleep(1)
            p.move(paris("2026-11-27", minute))
        eventually(lambda: all(len(p.inbox(m[0])) == 1 for m in p.defis.values()), 20)
        time.sleep(1)
    finally:
        assert d.stop() == 0
    assert [len(p.inbox(m[0])) for m in p.defis.values()] == [1, 1, 1]


def test_down_from_eight_to_eleven_the_request_goes_at_restart(clocked):
    p = clocked({"alpha": 1, "beta": 1}, paris("2026-11-27", "08:00"))
    d = p.daemon().wait_ready()
    time.sleep(1)
    assert d.stop() == 0
    p.move(paris("2026-11-27", "11:00"))
    d = p.daemon()
    eventually(lambda: all(len(p.inbox(m[0])) == 1 for m in p.defis.values()), what="request")
    request = p.inbox(p.defis["alpha"][0])[0]
    assert request["Date"].datetime == paris("2026-11-27", "11:00")  # sent at restart
    a0 = p.defis["alpha"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nça avance"), a0)
    p.wait_shared(1)
    for moment in ("12:00", "15:00"):
        p.move(paris("2026-11-27", moment))
        time.sleep(1.5)
    eventually(lambda: len(p.inbox(p.config.addresses.cohort)) == 1, what="digest")
    assert d.stop() == 0
    reminder = p.inbox(p.defis["beta"][0])[1]
    assert reminder["Date"].datetime == paris("2026-11-27", "12:00")
    digest = p.inbox(p.config.addresses.cohort)[0]
    assert digest["Date"].datetime == paris("2026-11-27", "15:00")
    assert "en retard" not in text_of(digest)


@pytest.mark.parametrize("friday", ["2026-10-30", "2027-04-02"])
def test_the_friday_after_a_daylight_saving_change(clocked, friday):
    """09:00, 12:00 and 15:00 are Paris wall-clock times, in winter and in summer."""
    p = clocked({"alpha": 1}, paris(friday, "08:59"))
    d = p.daemon().wait_ready()
    try:
        time.sleep(1)
        assert p.inbox(p.defis["alpha"][0]) == []
        for moment in ("09:00", "11:59", "12:00", "15:00"):
            p.move(paris(friday, moment))
            time.sleep(1)
        eventually(lambda: len(p.inbox(p.config.addresses.cohort)) == 1, what="digest")
    finally:
        assert d.stop() == 0
    request, reminder = p.inbox(p.defis["alpha"][0])[:2]
    digest = p.inbox(p.config.addresses.cohort)[0]
    for msg, hour in ((request, 9), (reminder, 12), (digest, 15)):
        local = msg["Date"].datetime.astimezone(PARIS)
        assert (local.date().isoformat(), local.hour) == (friday, hour)


def test_a_new_workflow_file_is_picked_up_without_code_changes(clocked, tmp_path):
    workflows, templates = tmp_path / "workflows", tmp_path / "templates"
    shutil.copytree(ROOT / "workflows", workflows)
    shutil.copytree(ROOT / "templates", templates)
    p = clocked({"alpha": 1}, paris("2026-11-23", "08:00"),
                mailflow={"workflows": str(workflows), "templates": str(templates)})  # fmt: skip
    d = p.daemon().wait_ready()
    try:
        (templates / "hello").mkdir()
        (templates / "hello" / "monday.fr.txt.j2").write_text(
            "Subject: Bonne semaine {{ defi.name }}\nBonjour l'équipe {{ defi.name }} !\n"
        )
        (workflows / "hello.toml").write_text(
            '[schedule]\nevery = "week"\nday = "monday"\n\n[[steps]]\nid = "hello"\n'
            'at = "10:00"\naction = "send"\ntemplate = "hello/monday"\nto = "each_defi"\n'
        )
        eventually(lambda: "workflows reloaded: " in d.log.read_text(), 10, "reload")
        p.move(paris("2026-11-23", "10:00"))
        eventually(lambda: len(p.inbox(p.defis["alpha"][0])) == 1, what="the new workflow's mail")
    finally:
        assert d.stop() == 0
    assert str(p.inbox(p.defis["alpha"][0])[0]["Subject"]) == "Bonne semaine Alpha"


def test_a_wrong_workflow_file_stops_the_daemon_before_it_starts(programme, tmp_path):
    workflows = tmp_path / "workflows"
    shutil.copytree(ROOT / "workflows", workflows)
    (workflows / "broken.toml").write_text('[schedule]\nevery = "week"\nday = "funday"\n')
    p = programme({"alpha": 1}, mailflow={"workflows": str(workflows)})
    result = p.run("run", "--once")
    assert result.exit_code == 2
    assert "broken.toml: schedule.day: expected a weekday" in result.output


WEEK = [  # (instant, who replies just after it)
    (paris("2026-11-27", "08:00"), None),
    (paris("2026-11-27", "09:00"), "alpha"),
    (paris("2026-11-27", "10:00"), None),
    (paris("2026-11-27", "12:00"), "beta"),
    (paris("2026-11-27", "14:00"), None),
    (paris("2026-11-27", "14:30"), None),
    (paris("2026-11-27", "15:00"), "gamma"),  # after the digest: late
    (paris("2026-11-30", "09:00"), None),
    (paris("2026-12-04", "09:00"), None),
    (paris("2026-12-04", "15:00"), None),
]


def _week_with_a_kill(p, rng) -> int:
    """Play WEEK, killing the daemon once at a random point; returns the number of kills."""
    kill_at = rng.randrange(len(WEEK))
    replied = 0
    d = p.daemon()
    for i, (moment, replier) in enumerate(WEEK):
        p.move(moment)
        time.sleep(0.3)
        if i == kill_at:
            time.sleep(rng.uniform(0.0, 0.5))
            d.kill()
            d = p.daemon()
        if replier:
            member = p.defis[replier][0]
            request = p.localmail.wait_for(member, 1, timeout=20)[0]
            p.swaks(
                clients.gmail(request, member, replier, f"Victoires :\n{replier} avance"), member
            )
            replied += 1
            p.wait_shared(replied)
    time.sleep(1)
    d.stop()
    return replied


def _digests_settled(database: Path) -> bool:
    return count(database, "select count(*) from runs where step = 'digest'") == 2


def test_sigkill_at_random_points_of_twenty_simulated_weeks(clocked):
    """Every reply stored once; no mail twice, but for the one in flight at a kill.

    A kill can make the daemon miss a week's 09:00 request (the next instant is already
    past its grace when the new daemon ticks): that week then gets no digest at all,
    never one for a request that did not go out.
    """
    rng = random.Random(20261127)
    for trial in range(20):
        p = clocked({"alpha": 1, "beta": 1, "gamma": 1, "delta": 1}, WEEK[0][0])
        replied = _week_with_a_kill(p, rng)
        # Whatever is left (a step due just before the kill, a mail in flight) completes.
        d = p.daemon()
        db = p.config.database
        eventually(lambda db=db: _digests_settled(db), 20, f"trial {trial}")
        asked = count(
            db, "select count(*) from runs where step = 'request' and status != 'skipped'"
        )
        digested = count(
            db, "select count(*) from runs where step = 'digest' and status != 'skipped'"
        )
        assert asked == digested >= 1, f"trial {trial}: {asked} requests, {digested} digests"
        cohort = p.config.addresses.cohort
        eventually(lambda p=p, c=cohort, n=digested: len(p.inbox(c)) >= n, 20, f"trial {trial}")
        time.sleep(0.5)
        assert d.stop() == 0
        assert len(p.inbox(cohort)) == digested
        assert count(db, "select count(*) from inbound where kind = 'answer'") == replied
        assert count(db, "select count(*) from messages") == replied
        assert count(db, "select count(*) from outbox where status != 'sent'") == 0
        received = [m for members in p.defis.values() for m in p.inbox(members[0])]
        received += p.inbox(p.config.addresses.cohort)
        ids = Counter(m["Message-ID"] for m in received)
        expected = count(db, "select count(*) from outbox where recipient not in ('staff')")
        assert len(ids) == expected, f"trial {trial}"
        assert sum(n - 1 for n in ids.values()) <= 1, f"trial {trial}: {ids.most_common(3)}"
        # gamma answers once the 15:00 digest is due: late if it went out before the answer
        # was read (then shown in the next week's digest, if that week was asked), counted
        # if a kill delayed it; never shown twice.
        digests = [text_of(m) for m in p.inbox(p.config.addresses.cohort)]
        on_time = count(db, "select count(*) from inbound where status = 'counted'"
                        " and occurrence = '2026-W48' and data like '%gamma avance%'")  # fmt: skip
        shown = 1 if on_time or digested == 2 else 0
        assert sum("gamma avance" in t for t in digests) == shown, f"trial {trial}"


def test_without_idle_the_daemon_polls(programme, tmp_path):
    p = programme({"alpha": 1}, imap={"idle": False})
    p.tick("2026-11-27T09:00:00+01:00")
    d = Daemon(p.config.path, tmp_path / "poll.log", "--heartbeat", "1").wait_ready()
    try:
        a0 = p.defis["alpha"][0]
        p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nsans IDLE"), a0)
        eventually(lambda: count(p.config.database, "select count(*) from inbound") == 1, 10)
    finally:
        assert d.stop() == 0


def test_doctor_says_what_is_wrong_in_plain_words(programme, make_config):
    p = programme({"alpha": 1})
    result = p.run("doctor")
    assert result.exit_code == 0, result.output
    expected = [
        "ok   config", "ok   secrets", "ok   database", "ok   workflows", "ok   templates",
        "ok   roster: 1 team, 1 member, 2 staff members", "ok   IMAP: logged in as",
        "WARN alias: no mail to", "ok   SMTP",
    ]  # fmt: skip
    for line in expected:
        assert line in result.output
    assert "ok   secrets: $MAILFLOW_IMAP_PASSWORD, $MAILFLOW_SECRET set\n" in result.output
    # An empty variable is an unset one; what needs it is not checked, nor reported again.
    empty = CliRunner().invoke(
        cli, ["-c", str(p.config.path), "doctor"], env={**ENV, "MAILFLOW_IMAP_PASSWORD": ""}
    )
    assert empty.exit_code == 1
    assert "FAIL secrets: imap.password_env: expected the environment variable" in empty.output
    assert "secrets.env" in empty.output and empty.output.count("MAILFLOW_IMAP_PASSWORD") == 1
    for server in ("IMAP", "alias", "SMTP"):
        assert f"FAIL {server}: not checked: fix the secrets first" in empty.output
    wrong = CliRunner().invoke(
        cli, ["-c", str(p.config.path), "doctor"],
        env={**ENV, "MAILFLOW_IMAP_PASSWORD": "wrong"},
    )  # fmt: skip
    assert wrong.exit_code == 1
    assert "FAIL IMAP: IMAP 127.0.0.1:" in wrong.output and "login refused" in wrong.output
    down = make_config(smtp={"port": 1})
    result = CliRunner().invoke(cli, ["-c", str(down.path), "doctor"], env=ENV)
    assert "FAIL SMTP: SMTP 127.0.0.1:1: nothing listens there" in result.output


def _reply(p, member: str, body: str) -> bytes:
    return clients.gmail(p.localmail.fetch(member)[0], member, "A", body)


def _stored_within(database: Path, expected: int, timeout: float) -> float:
    """Seconds until ``expected`` messages are stored (fails after ``timeout``)."""
    start = time.monotonic()
    eventually(lambda: count(database, "select count(*) from messages") >= expected,
               timeout, f"{expected} messages stored")  # fmt: skip
    return time.monotonic() - start


def test_idle_survives_the_watched_folder_deleted_and_recreated(programme, tmp_path):
    """Dovecot refuses to delete INBOX (RFC 3501), so the daemon watches another folder."""
    p = programme({"alpha": 1}, imap={"folders": ["Replies"]})
    client = p.localmail.imap(p.shared)
    client.create_folder("Replies")
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    d = Daemon(p.config.path, tmp_path / "daemon.log", "--heartbeat", "600").wait_ready()
    try:
        # Three replies stored: the recreated folder's UIDs start again below the last one.
        for i in range(3):
            client.append("Replies", _reply(p, a0, f"Victoires :\navant {i}"))
        _stored_within(p.config.database, 3, 10)
        client.delete_folder("Replies")
        time.sleep(2)  # the daemon sees the folder gone, and ticks without it
        client.create_folder("Replies")
        time.sleep(0.5)
        client.append("Replies", _reply(p, a0, "Victoires :\naprès"))
        latency = _stored_within(p.config.database, 4, 30)
        print(f"stored {latency:.2f} s after delivery into the recreated folder")
        assert latency < 2
        client.append("Replies", _reply(p, a0, "Victoires :\nencore après"))
        latency = _stored_within(p.config.database, 5, 30)
        print(f"then {latency:.2f} s for the next reply")
        assert latency < 2
    finally:
        client.logout()
        assert d.stop() == 0


def test_idle_survives_a_new_uidvalidity_of_inbox(programme, localmail, tmp_path):
    """The server renumbers INBOX under the idling daemon (as after a restore)."""
    p = programme({"alpha": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    d = Daemon(p.config.path, tmp_path / "daemon.log", "--heartbeat", "600").wait_ready()
    try:
        p.swaks(_reply(p, a0, "Victoires :\navant"), a0)
        _stored_within(p.config.database, 1, 10)
        doveadm = ["doveadm", "-c", str(localmail.dovecot.config), "mailbox", "update",
                   "-u", p.shared, "--uid-validity", "4242", "INBOX"]  # fmt: skip
        subprocess.run(doveadm, check=True, capture_output=True)
        time.sleep(1)
        p.swaks(_reply(p, a0, "Victoires :\naprès"), a0)
        latency = _stored_within(p.config.database, 2, 30)
        print(f"stored {latency:.2f} s after delivery into the renumbered INBOX")
        assert latency < 2
    finally:
        assert d.stop() == 0
    assert count(p.config.database, "select uidvalidity from folders") == 4242
