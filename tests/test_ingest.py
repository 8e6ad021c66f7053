"""Ingest against a real Dovecot: every message stored once, never lost, never marked read."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP

from click.testing import CliRunner

from mailflow.cli import cli
from mailflow.localmail.samples import sample_replies
from mailflow.receiving.ingest import ingest
from mailflow.store.db import open_db

from .conftest import ENV

MALFORMED = [
    b"\x00\x01\x02 this is not a mail at all \xff\xfe",
    b"no headers here, just a line\r\n",
    b"From: a@x.test\r\nSubject: cut\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
    b"--zz\r\nContent-Type: text/plain\r\n\r\nVictoires : la partie lisible\r\n",
    b"Subject: bad b64\r\nContent-Transfer-Encoding: base64\r\n\r\nQm9uam91ciDDqXF1aXBl!!!*\r\n",
]


def count(db, sql, params=()):
    return db.execute(sql, params).fetchone()[0]


def test_ingest_stores_every_message_once_without_marking_read(localmail, make_config):
    config = make_config(imap={"batch_size": 7})
    replies = sample_replies(30)
    localmail.append(config.imap.username, replies)
    db = open_db(config.database)

    report = ingest(db, config.imap)
    assert (report.stored, report.parsed, report.quarantined) == (30, 30, 0)
    assert count(db, "select count(*) from messages") == 30
    stored = {row[0] for row in db.execute("select raw from messages")}
    assert stored == set(replies)  # bytes exactly as sent, sha256 alongside
    assert count(db, "select count(*) from messages where sha256 is null") == 0

    again = ingest(db, config.imap)
    assert (again.stored, again.parsed) == (0, 0)
    assert count(db, "select count(*) from messages") == 30
    client = localmail.imap(config.imap.username)
    try:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search("UNSEEN")) == 30  # BODY.PEEK: nothing marked read
    finally:
        client.logout()


def test_new_messages_are_picked_up_from_the_last_uid(localmail, make_config):
    config = make_config()
    db = open_db(config.database)
    localmail.append(config.imap.username, sample_replies(5, seed=2))
    ingest(db, config.imap)
    localmail.append(config.imap.username, sample_replies(3, seed=3))
    report = ingest(db, config.imap)
    assert report.stored == 3 and report.folders[0].seen == 3
    assert count(db, "select last_uid from folders") == 8


def test_uidvalidity_change_resyncs_without_duplicates(localmail, make_config):
    config = make_config(imap={"folders": ["Replies"]})
    user = config.imap.username
    first = sample_replies(10, seed=4)
    localmail.append(user, first, "Replies")
    db = open_db(config.database)
    ingest(db, config.imap)
    old_validity = count(db, "select uidvalidity from folders")

    # The provider resets the folder: same messages, new UIDVALIDITY, plus a new one.
    client = localmail.imap(user)
    try:
        client.delete_folder("Replies")
    finally:
        client.logout()
    newcomer = sample_replies(11, seed=5)[-1]
    localmail.append(user, [*first, newcomer], "Replies")

    report = ingest(db, config.imap)
    folder = report.folders[0]
    assert folder.resynced and folder.uidvalidity != old_validity
    assert (folder.stored, folder.duplicates) == (1, 10)
    assert count(db, "select count(*) from messages") == 11
    assert (
        count(
            db, "select count(*) from message_locations where uidvalidity = ?", [folder.uidvalidity]
        )
        == 11
    )


def test_oversized_message_is_quarantined_without_fetching_its_body(localmail, make_config):
    config = make_config(imap={"max_message_size": "20KB"})
    big = EmailMessage(policy=SMTP)
    big["From"] = "camille@bulletins.test"
    big["Subject"] = "Compte rendu avec pièce jointe"
    big["Message-ID"] = "<big@bulletins.test>"
    big.set_content("Voir la pièce jointe.")
    big.add_attachment(
        b"BODY-MARKER" * 10_000, maintype="application", subtype="pdf", filename="cr.pdf"
    )
    small = sample_replies(2, seed=6)
    localmail.append(config.imap.username, [small[0], big.as_bytes(), small[1]])
    db = open_db(config.database)

    report = ingest(db, config.imap)
    assert report.folders[0].oversized == 1 and report.parsed == 2
    row = db.execute(
        "select raw, complete, status, error, size from messages where message_key = ?",
        ["<big@bulletins.test>"],
    ).fetchone()
    raw, complete, status, error, size = row
    assert (complete, status) == (0, "quarantined")
    assert b"Subject: " in raw and b"BODY-MARKER" not in raw and len(raw) < 2_000
    assert size > 100_000 and "max_message_size" in error


def test_malformed_messages_do_not_stop_the_batch(localmail, make_config):
    config = make_config()
    good = sample_replies(3, seed=7)
    mixed = [good[0], *MALFORMED[:2], good[1], *MALFORMED[2:], good[2]]
    localmail.append(config.imap.username, mixed)
    db = open_db(config.database)

    report = ingest(db, config.imap)
    assert report.stored == len(mixed) and report.parsed == len(mixed)
    assert count(db, "select count(*) from messages where status = 'parsed'") == len(mixed)
    # Without a Message-ID, a message is keyed by the hash of its bytes.
    assert count(db, "select count(*) from messages where message_key like 'sha256:%'") == len(
        MALFORMED
    )
    texts = [row[0] for row in db.execute("select data from parsed")]
    assert any("la partie lisible" in t for t in texts)


def _stored(config):
    db = open_db(config.database)
    try:
        return count(db, "select count(*) from messages"), count(
            db, "select count(*) from messages where status = 'parsed'"
        )
    finally:
        db.close()


def test_killed_ingest_resumes_without_loss_or_duplicates(localmail, make_config, tmp_path):
    """kill -9 at random points of the sync and of the parse, until a run completes."""
    config = make_config(imap={"batch_size": 10})
    total = 400
    localmail.append(config.imap.username, sample_replies(total, seed=9))
    env = {**os.environ, **ENV}
    command = [sys.executable, "-m", "mailflow", "-c", str(config.path), "ingest"]
    rng = random.Random(42)
    kills = []
    for _ in range(40):
        before = _stored(config)
        # Kill once a random number more messages are stored, or once a random number
        # more are parsed: the process is then in the middle of a fetch or a parse batch.
        phase = rng.choice([0, 1]) if before[0] < total else 1
        target = before[phase] + rng.randint(1, max(1, (total - before[phase]) // 2))
        with (tmp_path / "ingest.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
            while process.poll() is None and _stored(config)[phase] < target:
                time.sleep(0.002)
            if process.poll() is not None:
                assert process.returncode == 0, (tmp_path / "ingest.log").read_text()
                break
            process.send_signal(signal.SIGKILL)
            process.wait()
        kills.append(_stored(config))
    else:
        raise AssertionError("ingest never completed")
    assert any(0 < stored < total for stored, _ in kills), kills
    assert any(0 < parsed < total for _, parsed in kills), kills
    db = open_db(config.database)
    assert count(db, "select count(*) from messages") == total
    assert count(db, "select count(distinct sha256) from messages") == total
    assert count(db, "select count(*) from message_locations") == total
    assert count(db, "select count(*) from messages where status = 'parsed'") == total
    assert count(db, "select count(*) from parsed") == total


def test_cli_ingest_reports_what_it_did(localmail, make_config):
    config = make_config()
    localmail.append(config.imap.username, sample_replies(3, seed=10))
    result = CliRunner().invoke(cli, ["-c", str(config.path), "ingest"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "INBOX: 3 stored, 0 already known" in result.output
    assert "parsed 3" in result.output


def test_cli_ingest_says_clearly_when_the_server_is_down(make_config):
    config = make_config(imap={"port": 1})
    result = CliRunner().invoke(cli, ["-c", str(config.path), "ingest"], env=ENV)
    assert result.exit_code == 1
    assert "IMAP 127.0.0.1:1: nothing listens there: check [imap] host and port" in result.output
