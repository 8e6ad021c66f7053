"""What could not be read stays readable: a parsed record of its header, and why.

Messages over ``imap.max_message_size`` (stored header-only) and messages whose parse
failed or ran out of time are quarantined with a ``parsed`` row built from their header
alone, ``unreadable`` saying why; such a row is never taken for an answer.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
from email.message import EmailMessage
from email.policy import SMTP

from mailflow.localmail import clients
from mailflow.localmail.samples import sample_replies
from mailflow.receiving.ingest import (
    MAX_PARSE_ATTEMPTS,
    ingest,
    parse_pending,
    session,
    sync_folder,
)
from mailflow.receiving.parse import ParsedMessage, parse_message
from mailflow.store.db import open_db

from .conftest import text_of
from .test_corpus import CONTRACT_KEYS


def parsed_row(db, key):
    row = db.execute(
        "select m.status, m.error, p.from_address, p.subject, p.in_reply_to, p.data"
        " from messages m join parsed p on p.message = m.id where m.message_key = ?",
        [key],
    ).fetchone()
    assert row is not None, f"no parsed record for {key}"
    status, error, sender, subject, in_reply_to, data = row
    return status, error, sender, subject, in_reply_to, json.loads(data)


def big_message(size: int) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Camille Martin <camille@bulletins.test>"
    msg["Subject"] = "Re: semaine 48, avec le compte rendu"
    msg["Message-ID"] = "<big@bulletins.test>"
    msg["In-Reply-To"] = "<retro.2026-W48.request.d3@programme.test>"
    msg.set_content("Victoires :\nvoir la pièce jointe")
    msg.add_attachment(b"%PDF" * (size // 4), maintype="application", subtype="pdf",
                       filename="cr.pdf")  # fmt: skip
    return msg.as_bytes()


def test_an_oversized_message_has_its_header_parsed_and_the_reason(localmail, make_config):
    config = make_config(imap={"max_message_size": "20KB"})
    raw = big_message(30_000)
    localmail.append(config.imap.username, [raw, *sample_replies(1, seed=20)])
    db = open_db(config.database)
    report = ingest(db, config.imap)
    assert (report.stored, report.parsed, report.folders[0].oversized) == (2, 1, 1)
    status, error, sender, subject, in_reply_to, data = parsed_row(db, "<big@bulletins.test>")
    assert status == "quarantined" and "max_message_size" in error
    assert (sender, subject) == ("camille@bulletins.test", "Re: semaine 48, avec le compte rendu")
    assert in_reply_to == "<retro.2026-W48.request.d3@programme.test>"
    size = len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) / 1024
    assert data["unreadable"] == f"too large: {size:.1f} KB, over the 20 KB limit"
    assert data["from_name"] == "Camille Martin" and data["text"] == ""
    assert data["sections"] == {} and data["attachments"] == []
    assert data.keys() >= CONTRACT_KEYS | {"unreadable"}
    # The other message is read as usual, with no reason.
    normal = db.execute("select data from parsed where message != (select id from messages"
                        " where message_key = '<big@bulletins.test>')").fetchone()[0]  # fmt: skip
    assert json.loads(normal)["unreadable"] is None


def test_a_message_that_cannot_be_parsed_is_retried_then_quarantined_with_its_header(
    localmail, make_config
):
    config = make_config()
    replies = sample_replies(3, seed=21)
    localmail.append(config.imap.username, replies)
    db = open_db(config.database)
    with session(config.imap) as client:
        sync_folder(db, client, "INBOX", config.imap)
    poison = replies[1]

    def fragile(raw, spec):
        if raw == poison:
            raise RuntimeError("parser bug")
        return parse_message(raw, spec)

    # (parsed, to retry, quarantined) at each attempt: retried, then quarantined, then left.
    assert parse_pending(db, None, parser=fragile) == (2, 1, 0)
    for attempt in range(2, MAX_PARSE_ATTEMPTS + 1):
        expected_counts = (0, 0, 1) if attempt == MAX_PARSE_ATTEMPTS else (0, 1, 0)
        assert parse_pending(db, None, parser=fragile) == expected_counts
    assert parse_pending(db, None, parser=fragile) == (0, 0, 0)
    expected = parse_message(poison)
    key = expected.message_id
    status, error, sender, subject, _, data = parsed_row(db, key)
    assert status == "quarantined" and error == "parse failed: RuntimeError: parser bug"
    assert (sender, subject) == (expected.from_address, expected.subject)
    assert data["unreadable"] == f"{error} ({MAX_PARSE_ATTEMPTS} attempts)"
    assert data["in_reply_to"] == list(expected.in_reply_to) and data["text"] == ""
    assert ParsedMessage.from_json(data).unreadable == data["unreadable"]


def test_a_parse_that_runs_out_of_time_is_stopped_then_quarantined(
    localmail, make_config, monkeypatch
):
    config = make_config()
    localmail.append(config.imap.username, sample_replies(1, seed=22))
    db = open_db(config.database)
    with session(config.imap) as client:
        sync_folder(db, client, "INBOX", config.imap)
    monkeypatch.setattr(importlib.import_module("mailflow.receiving.ingest"), "PARSE_SECONDS", 0.2)

    def stuck(raw, spec):
        with contextlib.suppress(Exception):  # recovery in a parser must not end the limit
            time.sleep(30)
        return parse_message(raw, spec)

    start = time.monotonic()
    results = [parse_pending(db, None, parser=stuck) for _ in range(MAX_PARSE_ATTEMPTS)]
    assert time.monotonic() - start < 5
    assert results == [(0, 1, 0), (0, 1, 0), (0, 0, 1)]
    (data,) = db.execute("select data from parsed").fetchone()
    assert json.loads(data)["unreadable"] == (
        f"parse too slow: stopped after 0.2 s ({MAX_PARSE_ATTEMPTS} attempts)"
    )


def test_an_unreadable_answer_is_not_counted_nor_acknowledged(programme):
    p = programme({"alpha": 1}, imap={"max_message_size": "20KB"})
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    reply = clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice", "Victoires :\nvoir la PJ")
    p.swaks(reply + (b"A" * 76 + b"\r\n") * 500, a0)  # an epilogue takes it over the limit
    p.wait_shared(1)
    p.tick("2026-11-27T10:00:00+01:00")
    db = open_db(p.config.database)
    assert db.execute("select count(*) from parsed where json_extract(data, '$.unreadable')"
                      " like 'too large:%'").fetchone()[0] == 1  # fmt: skip
    # Tied to alpha's request, never counted, never acknowledged.
    assert db.execute("select kind, status, respondent from inbound").fetchall() == [
        ("answer", "unreadable", "d-alpha")
    ]
    assert len(p.inbox(a0)) == 1  # the request only: no receipt for what was not read
    for moment in ("12:00", "14:00", "15:00"):
        p.tick(f"2026-11-27T{moment}:00+01:00")
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "* Alpha (une réponse est arrivée mais n'a pas pu être lue" in digest
    p.tick("2026-11-30T09:30:00+01:00")  # Monday: the desk's daily mail lists it
    [desk] = [m for m in p.inbox(p.staff[0]) if "en attente" in str(m["Subject"])]
    assert "Message trop volumineux pour être lu" in text_of(desk) and "Alpha" in text_of(desk)
