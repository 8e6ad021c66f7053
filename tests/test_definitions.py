"""Roster, workflows, tokens and templates: loaded, checked, and wrong values named."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
from pathlib import Path

import pytest

from mailflow.errors import ConfigError, TemplateError
from mailflow.programme.roster import load_roster, stored_roster, sync_roster
from mailflow.programme.workflow import load_workflow, load_workflows
from mailflow.sending import tokens
from mailflow.sending.message import build_message
from mailflow.sending.render import Rendered, Renderer
from mailflow.store.db import open_db

from .conftest import ROOT

ROSTER = """
[[defi]]
id = "bulletins"
name = "Bulletins"
host = "DINUM"
members = ["Camille Martin <Camille.Martin@bulletins.test>", "hugo@bulletins.test"]
active_until = 2027-06-30

[[staff]]
name = "Soizic"
address = "soizic@programme.test"
role = "lead"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_roster_loads_and_is_kept_in_sqlite(tmp_path):
    roster = load_roster(write(tmp_path, "roster.toml", ROSTER))
    [defi] = roster.defis
    assert defi.addresses == ("camille.martin@bulletins.test", "hugo@bulletins.test")
    assert defi.members[0].name == "Camille Martin"
    assert defi.active_on(dt.date(2027, 6, 30)) and not defi.active_on(dt.date(2027, 7, 1))
    db = open_db(tmp_path / "r.db")
    assert sync_roster(db, roster) is True
    assert sync_roster(db, roster) is False
    assert stored_roster(db) == roster


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('id = "bulletins"', 'id = "Bulletins!"'),
            r"defi 1\.id: expected lower-case letters \(no accent\), digits and dashes, got 'Bul",
        ),
        (
            ('"hugo@bulletins.test"', '"not an address"'),
            r'defi "bulletins"\.members: expected ASCII',
        ),
        (
            ('"hugo@bulletins.test"', '"élodie@bulletins.test"'),
            r'defi "bulletins"\.members: expected ASCII',
        ),
        (("active_until = 2027-06-30", 'active_until = "June"'), r"active_until: expected a date"),
        (('role = "lead"', 'rol = "lead"'), r"staff 1\.rol: expected a known key"),
        (
            ("[[staff]]", '[[defi]]\nid = "bulletins"\nname = "Twice"\n[[staff]]'),
            r'defi "bulletins"\.id: expected an id used by no other',
        ),
    ],
)
def test_roster_errors_name_the_key(tmp_path, change, message):
    path = write(tmp_path, "roster.toml", ROSTER.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_roster(path)


def test_the_shipped_workflows_load():
    [retro] = [w for w in load_workflows(ROOT / "workflows") if w.name == "retro"]
    assert [s.id for s in retro.steps] == ["request", "reminder-1", "reminder-2", "digest", "needs"]
    assert retro.collect is not None and retro.collect.section_keys == (
        "victories",
        "difficulties",
        "needs",
    )
    assert retro.deadline == dt.time(14, 30)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('at = "09:00"', 'at = "25:00"'),
            r'step "request"\.at: expected a time HH:MM, got .25:00.',
        ),
        (('day = "friday"', 'day = "vendredi"'), r"schedule\.day: expected a weekday"),
        (('to = "each_defi"', 'to = "everybody"'), r'step "request"\.to: expected one of'),
        (('grace = "4h"', 'grace = "four hours"'), r'step "request"\.grace: expected a duration'),
        (('holidays = "FR"', 'holidays = "XX"'), r"schedule\.holidays: expected a country code"),
        (
            ('unless_empty = ["needs", "flags"]', 'unless_empty = ["wishes"]'),
            r'step "needs"\.unless_empty',
        ),
        (
            ('action = "send"', 'action = "shout"'),
            r'step "request"\.action: expected one of .send., .digest.',
        ),
    ],
)
def test_workflow_errors_name_the_file_and_key(tmp_path, change, message):
    text = (ROOT / "workflows" / "retro.toml").read_text()
    assert change[0] in text
    path = write(tmp_path, "retro.toml", text.replace(*change, 1))
    with pytest.raises(ConfigError, match=message) as error:
        load_workflow(path)
    assert str(path) in str(error.value)


def test_tokens_round_trip_and_forgeries_are_refused():
    token = tokens.Token("retro", "2026-W48", "request", "d-bulletins")
    mid = tokens.message_id("secret", token, "programme.test")
    assert tokens.read("secret", mid) == token
    assert tokens.read("other secret", mid) is None
    forged = mid.replace("d-bulletins", "d-sirene")
    assert tokens.read("secret", forged) is None
    assert tokens.read("secret", "<CAHx1@mail.gmail.com>") is None
    assert tokens.first_token("secret", ("<x@y>", forged, mid)) == token


def test_templates_fail_clearly(tmp_path):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    renderer = Renderer(tmp_path / "templates")
    with pytest.raises(TemplateError, match=r"retro/request\.fr\.txt\.j2: 'week' is undefined"):
        renderer.render("retro/request", "fr", {})
    with pytest.raises(TemplateError, match="not found"):
        renderer.check("retro/absent", "fr")
    (tmp_path / "templates" / "bad.fr.txt.j2").write_text("Subject: {{ oops\n")
    with pytest.raises(TemplateError, match=r"bad\.fr\.txt\.j2, line 1"):
        renderer.check("bad", "fr")
    (tmp_path / "templates" / "nosubject.fr.txt.j2").write_text("Bonjour\n")
    with pytest.raises(TemplateError, match="must start with 'Subject: '"):
        renderer.render("nosubject", "fr", {})


def test_built_messages_encode_accents_and_carry_the_headers():
    raw = build_message(
        Rendered("Rétrospective : vos réponses", "Bonjour l'équipe Sirène,\n", "<p>Bonjour</p>"),
        sender="mailflow@programme.test", sender_name="Programme EIG · Équipe",
        to=["élise@sirene.test"[1:], "marc@sirene.test"], reply_to="mailflow@programme.test",
        message_id="<x.y@programme.test>", date=dt.datetime(2026, 11, 27, 8, tzinfo=dt.UTC),
    )  # fmt: skip
    assert raw.isascii()  # everything encoded for any SMTP server
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Rétrospective : vos réponses"
    assert msg["From"].addresses[0].display_name == "Programme EIG · Équipe"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().startswith("Bonjour l'équipe Sirène")
