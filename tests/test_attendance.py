"""Who comes, against real servers: iMIP replies from four calendar clients counted per
occurrence, the latest answer winning, an uninvited one flagged; the staff's headcount the
day before, by command and by ``mailflow events --attendance``; a change of time resets."""

from __future__ import annotations

import datetime as dt
import email
import json

import pytest

from mailflow.localmail.imip import CALENDAR_CLIENTS, calendar_reply
from mailflow.receiving.parse import parse_message
from mailflow.store.db import open_db

from .conftest import text_of
from .test_alias import MX, command, replies
from .test_events import only
from .test_recurring import PARIS, SERIES, VTIMEZONE, paris


def two_sessions() -> str:
    """The series of test_recurring, twice only (14 January and 11 March 2027)."""
    series = SERIES.replace("{exdates}", "").replace("COUNT=6", "COUNT=3")
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Nextcloud calendar//FR\n"
        f"{VTIMEZONE}{series}END:VCALENDAR\n"
    )


@pytest.mark.parametrize("client", CALENDAR_CLIENTS)
@pytest.mark.parametrize("partstat", ["accepted", "declined", "tentative"])
def test_each_clients_reply_is_read_with_its_occurrence(client, partstat, tmp_path):
    """Without servers: the shapes themselves, as parse reads them."""
    from mailflow.programme.events import Event
    from mailflow.sending.invitation import attachments, calendar
    from mailflow.sending.message import build_message
    from mailflow.sending.render import Rendered

    event = Event(
        "x", "series@agenda.test", "session", "Session collective",
        paris(dt.date(2027, 1, 14), "09:30"), paris(dt.date(2027, 1, 14), "17:30"),
        recurrence_id="20270114T083000Z",
    )  # fmt: skip
    ics = calendar(event, method="REQUEST", organizer="mailflow@programme.test",
                   organizer_name="Programme", attendee="camille@x.test", tz=PARIS,
                   stamp=dt.datetime(2027, 1, 7, tzinfo=dt.UTC))  # fmt: skip
    rendered = Rendered("Dans une semaine", "texte", None)
    raw = build_message(
        rendered, sender="mailflow@programme.test", sender_name="Programme",
        to=["camille@x.test"], reply_to="mailflow@programme.test", message_id="<i@programme.test>",
        date=dt.datetime(2027, 1, 7, tzinfo=dt.UTC), attachments=attachments(ics, "REQUEST"),
    )  # fmt: skip
    reply = calendar_reply(client, raw, "camille@x.test", "Camille Durand", partstat, "À jeudi")
    assert email.message_from_bytes(reply)["To"].endswith("<mailflow@programme.test>")
    parsed = parse_message(reply)
    found = parsed.calendar_reply
    assert found is not None
    assert (found["uid"], found["attendee"], found["partstat"]) == (
        "series@agenda.test", "camille@x.test", partstat,
    )  # fmt: skip
    written = {
        "outlook": ("20270114T093000", "Romance Standard Time"),
        "gmail": ("20270114T083000Z", None),
        "thunderbird": ("20270114T093000", "Europe/Paris"),
        "apple": ("20270114T093000", "Europe/Paris"),
    }[client]
    assert (found["recurrence_id"], found.get("recurrence_tz")) == written
    if client != "apple":  # Apple Calendar sends no comment
        assert parsed.text == "À jeudi"


def test_replies_are_counted_and_the_staff_get_the_headcount(programme, tmp_path):
    calendar = tmp_path / "agenda.ics"
    calendar.write_text(two_sessions())
    p = programme({"alpha": 2, "beta": 2}, mailflow={"workflows": str(only(tmp_path, "events"))},
                  events={"calendar": str(calendar)},
                  security={"trusted_authserv_ids": [MX]})  # fmt: skip
    (a0, a1), (b0, b1) = p.defis["alpha"], p.defis["beta"]
    p.tick(paris(dt.date(2027, 1, 7), "10:00").isoformat())
    raw = {m: p.localmail.fetch(m)[0] for m in (a0, a1, b0, b1)}

    answers = [
        ("outlook", a0, "accepted", "Je viendrai avec Julien, nous présenterons la démo."),
        ("gmail", a1, "accepted", ""),
        ("thunderbird", b0, "tentative", "Peut-être, selon mon train"),
        ("apple", b1, "declined", ""),
        # a1 changes their mind, later: the latest answer counts.
        ("gmail", a1, "declined", "Finalement je suis en congé."),
    ]
    for n, (client, who, partstat, comment) in enumerate(answers):
        date = dt.datetime(2027, 1, 8, 9, n, tzinfo=dt.UTC)
        p.swaks(calendar_reply(client, raw[who], who, who.split("@")[0], partstat, comment,
                               date=date), who)  # fmt: skip
    # Someone the invitation was forwarded to answers too: kept, and flagged.
    stranger = "dominique@ailleurs.test"
    forwarded = calendar_reply("gmail", raw[a0], stranger, "Dominique", "accepted", "",
                               date=dt.datetime(2027, 1, 8, 10, tzinfo=dt.UTC))  # fmt: skip
    p.swaks(forwarded, stranger)
    p.wait_shared(6)
    p.tick(paris(dt.date(2027, 1, 8), "12:00").isoformat())
    db = open_db(p.config.database)
    try:
        flags = db.execute("select address, kind from address_flags").fetchall()
    finally:
        db.conn.close()
    assert flags == [(stranger, "uninvited")]

    # The afternoon before, the staff's headcount.
    p.tick(paris(dt.date(2027, 1, 13), "10:00").isoformat())
    p.tick(paris(dt.date(2027, 1, 13), "17:00").isoformat())
    staff = p.staff[0]
    [headcount] = [m for m in p.inbox(staff) if "Présences" in str(m["Subject"])]
    assert headcount["Date"].datetime == paris(dt.date(2027, 1, 13), "17:00")
    text = text_of(headcount)
    assert "2 oui, 1 peut-être, 2 non, 2 sans réponse (6 invités)" in text
    coming = text[text.index("Viennent (2)") : text.index("Peut-être (1)")]
    assert "« Je viendrai avec Julien, nous présenterons la démo. »" in coming and a0 in coming
    assert f"* {stranger}, pas invité·e" in coming
    assert "Peut-être, selon mon train" in text[text.index("Peut-être (1)") :]
    declined = text[text.index("Ne viennent pas (2)") : text.index("Sans réponse (2)")]
    assert a1 in declined and b1 in declined and "Finalement je suis en congé." in declined
    assert p.staff[0] in text[text.index("Sans réponse (2)") :]

    # The command by mail, and the command line, say the same.
    command(p, staff, "Présences", "id : " + _first_id(p))
    p.wait_shared(7)
    p.tick(paris(dt.date(2027, 1, 13), "18:00").isoformat())
    [reply] = replies(p, staff)
    answer = text_of(reply)
    assert "Présences à « Session collective »" in answer
    assert "2 oui, 1 peut-être, 2 non, 2 sans réponse (6 invités)" in answer
    assert "Finalement je suis en congé." in answer
    listed = p.run("events", "--attendance")
    assert listed.exit_code == 0, listed.output
    assert "Réponses : 2 oui, 1 peut-être, 2 non, 2 sans réponse (6 invités)" in listed.output
    assert "non : " in listed.output and "Finalement je suis en congé." in listed.output
    counts = json.loads(p.run("events", "--format", "json").output)
    assert counts[0]["attendance"] == {
        "accepted": 2, "declined": 2, "tentative": 1, "no_answer": 2, "invited": 6,
    }  # fmt: skip
    # The second session was not answered: its own count is empty.
    assert counts[1]["attendance"]["accepted"] == 0


def _first_id(p) -> str:
    return json.loads(p.run("events", "--format", "json").output)[0]["id"]


def test_a_change_of_time_resets_the_answers_and_the_update_says_so(programme, tmp_path):
    calendar = tmp_path / "agenda.ics"
    calendar.write_text(two_sessions())
    p = programme({"alpha": 1}, mailflow={"workflows": str(only(tmp_path, "events"))},
                  events={"calendar": str(calendar)})  # fmt: skip
    a0 = p.defis["alpha"][0]
    p.tick(paris(dt.date(2027, 1, 7), "10:00").isoformat())
    [invite] = p.localmail.fetch(a0)
    p.swaks(calendar_reply("thunderbird", invite, a0, "Camille", "accepted", "Oui !"), a0)
    p.wait_shared(1)
    p.tick(paris(dt.date(2027, 1, 8), "10:00").isoformat())
    assert json.loads(p.run("events", "--format", "json").output)[0]["attendance"]["accepted"] == 1
    # The place changes: answers stand.
    calendar.write_text(two_sessions().replace("Tiers-lieu, Paris", "DINUM, Paris"))
    p.tick(paris(dt.date(2027, 1, 8), "11:00").isoformat())
    [moved_place] = [m for m in p.inbox(a0) if "Modifié" in str(m["Subject"])]
    assert "ne comptent plus" not in text_of(moved_place)
    assert json.loads(p.run("events", "--format", "json").output)[0]["attendance"]["accepted"] == 1
    # The January session moves to the afternoon (an override of that occurrence): the
    # answers are reset and the update asks again.
    override = (
        "BEGIN:VEVENT\nUID:sessions-2027@agenda.programme.test\n"
        "RECURRENCE-ID;TZID=Europe/Paris:20270114T093000\nDTSTAMP:20261201T120000Z\n"
        "DTSTART;TZID=Europe/Paris:20270114T140000\nDTEND;TZID=Europe/Paris:20270114T180000\n"
        "SUMMARY:Session collective\nLOCATION:DINUM, Paris\nEND:VEVENT\n"
    )
    moved = two_sessions().replace("Tiers-lieu, Paris", "DINUM, Paris")
    calendar.write_text(moved.replace("END:VCALENDAR", override + "END:VCALENDAR"))
    p.tick(paris(dt.date(2027, 1, 8), "12:00").isoformat())
    [_, rescheduled] = [m for m in p.inbox(a0) if "Modifié" in str(m["Subject"])]
    assert "les réponses données jusqu'ici ne comptent plus" in text_of(rescheduled)
    assert "de 14h à 18h" in text_of(rescheduled)
    first = json.loads(p.run("events", "--format", "json").output)[0]
    assert first["starts"] == "2027-01-14T14:00:00+01:00"
    assert first["attendance"]["accepted"] == 0 and first["attendance"]["no_answer"] == 3
    # Answering the update counts again.
    p.swaks(calendar_reply("outlook", p.localmail.fetch(a0)[-1], a0, "Camille", "declined",
                           "Pas l'après-midi"), a0)  # fmt: skip
    p.wait_shared(2)
    p.tick(paris(dt.date(2027, 1, 8), "13:00").isoformat())
    first = json.loads(p.run("events", "--format", "json").output)[0]
    assert first["attendance"]["declined"] == 1 and first["attendance"]["accepted"] == 0


def test_the_migration_keeps_events_and_their_changes(tmp_path):
    """0009 rebuilds ``events`` (a UID may now have several occurrences): nothing is lost."""
    import sqlite3

    from mailflow.store.db import Database, transaction
    from mailflow.store.migrations import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("pragma foreign_keys=on")
    db = Database(conn)
    names = [name for name, _ in MIGRATIONS]
    before = names.index("0009_attendance")
    for _, migration in MIGRATIONS[:before]:
        with transaction(db):
            migration(db)
    db.execute(
        "insert into events (id, uid, kind, title, starts, ends, audience, source, sequence,"
        " fingerprint, updated_at) values ('s1', 's1@x', 'session', 'S', '2026-12-10T08:30:00',"
        " '2026-12-10T16:30:00', 'everyone', 'planning', 2, 'f', 'now')"
    )
    db.execute(
        "insert into event_changes (event, sequence, change, detail, created_at)"
        " values ('s1', 2, 'changed', 'place: a → b', 'now')"
    )
    with transaction(db):
        MIGRATIONS[before][1](db)
    assert db.execute("select id, uid, recurrence_id, sequence from events").fetchall() == [
        ("s1", "s1@x", "", 2)
    ]
    assert db.execute("select event, detail from event_changes").fetchall() == [
        ("s1", "place: a → b")
    ]
    assert db.execute("pragma foreign_key_check").fetchall() == []
    for recurrence in ("20270114T083000Z", "20270311T083000Z"):
        db.execute(
            "insert into events (id, uid, recurrence_id, kind, title, starts, ends, audience,"
            " source, fingerprint, updated_at) values (?, 'series@x', ?, 'session', 'S', 'a',"
            " 'b', 'everyone', 'ics', 'f', 'now')",
            [f"ics-{recurrence}", recurrence],
        )
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("insert into event_changes (event, sequence, change, detail, created_at)"
                   " values ('nothing', 0, 'created', '', 'now')")  # fmt: skip
    conn.close()
