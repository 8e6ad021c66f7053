"""Delivery through a real SMTP server: retries, permanent failures, crashes, nothing twice."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter

from mailflow.running.engine import Engine
from mailflow.sending.send import deliver
from mailflow.store.db import open_db
from mailflow.store.outgoing import Outgoing, queue

from .conftest import ENV, text_of
from .test_retro import at


def test_queuing_the_same_mail_twice_is_a_no_op(tmp_path):
    db = open_db(tmp_path / "o.db")
    mail = Outgoing("retro:2026-W48:request:d-a", "retro", "2026-W48", "request", "d-a",
                    ("a@x.test",), "m@x.test", "<id@x.test>", "Sujet", b"raw")  # fmt: skip
    now = dt.datetime(2026, 11, 27, 8, tzinfo=dt.UTC)
    assert queue(db, mail, now) is True
    assert queue(db, mail, now) is False
    assert db.execute("select count(*) from outbox").fetchone()[0] == 1


def test_temporary_failures_are_retried_then_delivered_once(programme, localmail):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    localmail.smtp.fail_next("451 4.3.2 Try again later", times=2)
    result = p.tick(at("09:00"))
    assert "sent 1, to retry 2, failed 0" in result.output
    assert "to retry 0" in p.tick(at("09:00")).output  # not due again before its backoff
    assert "sent 2" in p.tick(at("09:02")).output
    assert sorted(len(p.inbox(m[0])) for m in p.defis.values()) == [1, 1, 1]
    status = p.run("status", "--week", "2026-W48").output
    assert "Mails : 3 envoyés" in status and "échec" not in status


def test_a_permanent_failure_is_not_retried_and_is_reported_to_the_staff(programme, localmail):
    p = programme({"alpha": 1, "beta": 1})
    localmail.smtp.fail_next("554 5.7.1 Message rejected as spam", times=1)
    assert "failed 1" in p.tick(at("09:00")).output
    for time in ("09:05", "10:00", "12:00"):
        p.tick(at(time))
    assert sorted(len(p.inbox(m[0])) for m in p.defis.values()) == [1, 2]  # one got its reminder
    reports = [m for m in p.inbox(p.staff[0]) if "non distribué" in str(m["Subject"])]
    assert len(reports) == 1
    assert "554 5.7.1 Message rejected as spam" in text_of(reports[0])


def test_a_refused_recipient_is_recorded_and_the_others_still_get_the_mail(programme, localmail):
    p = programme({"alpha": 2})
    gone = p.defis["alpha"][1]
    localmail.smtp.refuse(gone, "550 5.1.1 <gone>: Recipient address rejected: User unknown")
    try:
        p.tick(at("09:00"))
        p.tick(at("15:00"))
    finally:
        localmail.smtp.clear_failures()
    assert len(p.inbox(p.defis["alpha"][0])) == 1
    report = next(m for m in p.inbox(p.staff[0]) if "non distribué" in str(m["Subject"]))
    assert gone in text_of(report)
    needs = next(m for m in p.inbox(p.staff[0]) if "Besoins" in str(m["Subject"]))
    assert gone in text_of(needs) and "refusée" in text_of(needs)


def test_smtp_down_leaves_mail_queued_until_it_is_back(programme, localmail):
    p = programme({"alpha": 1})
    localmail.smtp.stop()
    try:
        result = p.run("tick", "--at", at("09:00"))
        assert result.exit_code == 1
        assert "nothing listens there" in result.output
    finally:
        localmail.smtp.start()
    assert "sent 1" in p.tick(at("09:10")).output
    assert len(p.inbox(p.defis["alpha"][0])) == 1


def _tick_process(p, when):
    command = [sys.executable, "-m", "mailflow", "-c", str(p.config.path), "tick", "--at", when]
    return subprocess.Popen(command, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _message_ids(p):
    return Counter(m["Message-ID"] for members in p.defis.values() for m in p.inbox(members[0]))


def test_killed_between_queuing_and_sending_every_mail_goes_exactly_once(programme, localmail):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1, "delta": 1})
    stalled = localmail.smtp.stall(60, at="ehlo")
    process = _tick_process(p, at("09:00"))
    try:
        assert stalled.wait(20), "the tick never reached the SMTP server"
        db = open_db(p.config.database)
        assert db.execute("select count(*) from outbox where status = 'queued'").fetchone()[0] == 4
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        localmail.smtp.clear_failures()
    p.tick(at("09:01"))
    assert list(_message_ids(p).values()) == [1, 1, 1, 1]


def test_killed_with_a_mail_in_flight_sends_that_one_again_with_the_same_message_id(
    programme, localmail
):
    """The documented at-least-once window: accepted by the server, not yet marked sent."""
    p = programme({"alpha": 1, "beta": 1, "gamma": 1, "delta": 1})
    stalled = localmail.smtp.stall(60, at="data", skip=2)
    process = _tick_process(p, at("09:00"))
    try:
        assert stalled.wait(20), "the third mail never reached the SMTP server"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        localmail.smtp.clear_failures()
    db = open_db(p.config.database)
    states = Counter(row[0] for row in db.execute("select status from outbox"))
    assert states == {"sent": 2, "sending": 1, "queued": 1}
    # At restart the queued mail goes; the one in flight (which the server did deliver)
    # waits for its lease to run out, as another live process might still be sending it,
    # then goes again.
    p.tick(at("09:01"))
    assert sorted(_message_ids(p).values()) == [1, 1, 1, 1]
    assert Counter(row[0] for row in db.execute("select status from outbox")) == {
        "sent": 3, "sending": 1,
    }  # fmt: skip
    p.tick(at("09:11"))
    copies = _message_ids(p)
    assert sorted(copies.values()) == [1, 1, 1, 2]
    assert Counter(row[0] for row in db.execute("select status from outbox")) == {"sent": 4}


def test_a_database_locked_while_a_sent_mail_is_marked_sends_it_again_after_its_lease(
    programme, localmail, caplog
):
    """The second at-least-once window: accepted by the server, the record of it locked out."""
    p = programme({"alpha": 1})
    a0 = p.defis["alpha"][0]
    engine = Engine(p.config, db=open_db(p.config.database, busy_timeout_ms=100))
    now = dt.datetime.fromisoformat(at("09:00"))
    engine.run_due(now)
    stalled = localmail.smtp.stall(1.5, at="data")  # delivered, the answer held back
    release = threading.Event()

    def hold_the_write_lock() -> None:
        assert stalled.wait(20), "the mail never reached the SMTP server"
        other = sqlite3.connect(p.config.database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing, past the busy timeout
        release.wait(30)
        other.execute("ROLLBACK")
        other.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        with caplog.at_level(logging.ERROR, logger="mailflow"):
            report = deliver(engine.db, p.config.smtp, now)
    finally:
        release.set()
        holder.join()
        localmail.smtp.clear_failures()
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "the database stayed locked" in error.getMessage() and error.exc_info is None
    assert (report.sent, report.retry, report.failed) == (0, 0, 0)
    status = "select status from outbox"
    assert engine.db.execute(status).fetchall() == [("sending",)]
    [copy] = p.inbox(a0)
    # Its lease keeps it from going while another process might be sending it; then it
    # goes again, the same bytes with the same Message-ID.
    assert deliver(engine.db, p.config.smtp, now + dt.timedelta(minutes=5)).sent == 0
    assert deliver(engine.db, p.config.smtp, now + dt.timedelta(minutes=11)).sent == 1
    assert Counter(m["Message-ID"] for m in p.inbox(a0)) == {copy["Message-ID"]: 2}
    assert engine.db.execute(status).fetchall() == [("sent",)]
