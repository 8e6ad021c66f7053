"""``mailflow demo``: told in the staff's words, its faults announced, its folder left to look at.

Each test runs the whole demo, on the real Dovecot and SMTP servers it starts itself
(about 8 s), then uses the folder it left with the servers stopped.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailflow.admin.demo import next_friday
from mailflow.cli import cli

# What the staff must never read: step ids, statuses, message kinds, UTC, keys, and
# respondents ("d-bulletins", though a "stand-up" is fine).
INTERNAL = re.compile(r"auto_reply|skipped|queued|\+00:00|UTC|\bd-|retro:")
MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


def _demo(folder: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["demo", "--dir", str(folder), *args])
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output
    return result.output


def _offline(folder: Path, *args: str) -> Any:
    """A command on the demo's config, with no password set: the servers are gone."""
    result = CliRunner().invoke(
        cli, ["-c", str(folder / "mailflow.toml"), *args],
        env={"MAILFLOW_IMAP_PASSWORD": None, "MAILFLOW_SMTP_PASSWORD": None,
             "MAILFLOW_SECRET": None},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result


def _narration(output: str, folder: Path, digest_start: str) -> str:
    """What the demo says of its day: the output before the digest, paths left out."""
    told = output[: output.index(digest_start)]
    return told.replace(str(folder), "FOLDER")


def _outbox(folder: Path, where: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(folder / "mailflow.db") as db:
        return db.execute(f"select step, subject, queued_at from outbox where {where}").fetchall()


def _check_totals(told: str, words: str, everything: str) -> int:
    """Each "in all N mails (a x, b y): c accepted, d not sent" adds up; returns how many."""
    lines = re.findall(rf"{words} (\d+) mails(?: \(([^)]*)\))? ?: ([^\n]*)", told)
    for total, parts, outcome in lines:
        if parts:
            assert sum(int(n) for n in re.findall(r"(\d+) ", parts)) == int(total), parts
        if not outcome.startswith(everything):
            assert sum(int(n) for n in re.findall(r"(\d+) ", outcome)) == int(total), outcome
    return len(lines)


def _servers_stopped(folder: Path) -> None:
    config = tomllib.loads((folder / "mailflow.toml").read_text())
    for table in ("imap", "smtp"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", config[table]["port"]), timeout=2).close()


@pytest.mark.starts_servers
def test_the_demo_tells_the_day_in_french_and_leaves_its_folder(tmp_path):
    folder = tmp_path / "demo"
    friday = next_friday(dt.date.today())  # the default: the coming Friday, in the future
    output = _demo(folder)
    week = f"{friday:%G}-W{friday:%V}"

    told = _narration(output, folder, "Le bulletin, tel que la promotion l'a reçu")
    assert not INTERNAL.findall(told)
    assert not MESSAGE_ID.search(output)
    assert "Soizic Pénicaud" in told and "Camille Martin (Bulletins) répond" in told

    # The planted fault is announced before the request goes, then seen happening.
    announced = told.index("une adresse volontairement erronée : ancien.membre@geocarto.test")
    assert announced < told.index("— La demande de rétrospective part vers 6 défis")
    assert (
        "Le serveur refuse ancien.membre@geocarto.test (Géocarto), l'adresse volontairement" in told
    )
    # Its consequence: the staff's notice, with the subject their mailbox received.
    ((notice,),) = [(s,) for _, s, _ in _outbox(folder, "step = 'failures'")]
    assert f"L'équipe est prévenue : « {notice} » arrive chez" in told
    assert (
        "réponse automatique d'absence de Françoise Giraud (Open Santé) : elle ne compte pas"
        in told
    )
    # Her out-of-office says she is away until Monday: Open Santé, her only, is not reminded.
    assert "Rappel à 2 défis qui n'ont pas répondu : Archipel et Géocarto" in told
    assert "Rappel à 1 défi qui n'a pas répondu : Archipel (1 personne)" in told
    # Open Santé's only member is away (an out-of-office with a return date): not silent.
    assert "; absents : Open Santé ; sans nouvelles : Archipel." in told
    # The mails of 09:00, counted as written and as the server accepted them.
    at_nine = _outbox(folder, "queued_at = (select min(queued_at) from outbox)")
    assert (
        f"En tout {len(at_nine)} mails (6 demandes, 1 avertissement à l'équipe) : tous acceptés"
        in told
    )
    assert (
        "En tout 11 mails : 10 acceptés par le serveur, 1 non envoyé faute de destinataire" in told
    )
    # (The 14:00 reminder is one mail now, told without a total.)
    assert _check_totals(told, "En tout", "tous acceptés") == 4

    # The digest is printed as the cohort received it: as it went out, word for word.
    preview = _offline(folder, "digest", "--preview", "--week", week).output
    assert preview.startswith("(Ce récapitulatif est parti le ")
    subject, _, text = preview.split("\n\n", 1)[1].partition("\n\n")
    assert f"Objet : {subject.removeprefix('Objet : ')}\n\n{text.strip()}" in output
    assert "Un contact au service juridique" in text and "SANS NOUVELLES" in text

    # The folder can be looked at once the servers are stopped, as the closing lines say.
    _servers_stopped(folder)
    assert (folder / "mailflow.toml").read_text().startswith("# Écrit par `mailflow demo`")
    assert "arrêtés" in (folder / "mailflow.toml").read_text().split("[mailflow]")[0]
    assert f"-c {folder}/mailflow.toml status --week {week}" in output
    assert f"-c {folder}/mailflow.toml digest --preview --week {week}" in output
    state = _offline(folder, "status", "--week", week).output
    for answered in ("Bulletins", "Datafix", "Géocarto", "Sirène"):
        assert f"[x] {answered} : réponse le" in state
    assert "[ ] Open Santé : pas de réponse" in state and "Plus de mail à ancien.membre" in state
    assert "Françoise Giraud <" in state and "jusqu'au lundi 7 décembre inclus" in state
    export = _offline(folder, "export").output
    assert export.count("\nretro,") == 4
    # The technical lines went to the log, not to the screen.
    assert "ancien.membre@geocarto.test refused (550" in (folder / "mailflow.log").read_text()


@pytest.mark.starts_servers
def test_the_demo_speaks_english_when_asked(tmp_path):
    folder = tmp_path / "demo-en"
    output = _demo(folder, "--language", "en", "--friday", "2026-11-27")

    told = _narration(output, folder, "The digest, as the cohort received it")
    assert not INTERNAL.findall(told)
    for french in ("La demande", "Le serveur", "répond", "En tout"):
        assert french not in told
    assert (
        "a deliberately wrong address: ancien.membre@geocarto.test (Géocarto) has no mailbox"
        in told
    )
    assert "The server refuses ancien.membre@geocarto.test (Géocarto), the deliberately" in told
    assert "09:12 — Camille Martin (Bulletins) answers the request from Gmail." in told
    # Datafix answers inside the English request, under its English headings.
    assert "mailflow records the answer from Datafix: victories, difficulties, needs." in told
    # Open Santé's only member is away (her out-of-office): the 14:00 reminder is one mail.
    assert _check_totals(told, "In all", "all accepted") == 4
    assert "; away: Open Santé; no news from Archipel." in told

    preview = _offline(folder, "digest", "--preview", "--week", "2026-W48").output
    assert preview.startswith("(This digest went out on ")
    subject = preview.split("\n")[2].removeprefix("Subject: ")
    assert subject == "News from the teams, week 48"
    assert f"Subject: {subject}\n" in output
    assert "[x] Datafix: answered" in _offline(folder, "status", "--week", "2026-W48").output


def _person(name: str, defi: str = "", planted: bool = False) -> dict[str, Any]:
    address = f"{name.lower().replace(' ', '.')}@x.test"
    return {"name": name, "address": address, "label": name or address, "defi": defi,
            "role": "member", "planted": planted, "code": 550, "failure": "rejected"}  # fmt: skip


KINDS = ("request", "reminder", "digest", "staff_digest", "invitation", "help", "notes",
         "receipt", "failure_notice", "notice", "command_reply", "event_change", "resend",
         "other")  # fmt: skip


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_branch_of_the_narration_renders(language):
    """The branches a demo day does not reach render too, in plain words, in each language."""
    from mailflow.admin.demo import Narrator
    from mailflow.sending.render import Renderer

    from .conftest import ROOT

    told: list[str] = []
    narrator = Narrator(Renderer(ROOT / "templates"), language, told.append)
    ada, bob = _person("Ada Lovelace", "Bulletins"), _person("Bob", "Open Santé", planted=True)
    tz = dt.timezone(dt.timedelta(hours=1))
    starts = dt.datetime(2026, 12, 11, 9, 30, tzinfo=tz)
    groups = [
        {"kind": kind, "count": 2, "accepted": 1, "unsent": 1, "waiting": 0,
         "subjects": ["Sujet"], "people": [ada, bob], "defis": ["Bulletins", "Open Santé"],
         "refused": [bob, {**ada, "failure": "exhausted"}], "suppressed": [ada, bob],
         "retry": [ada], "messages": [], "arrived": [{"subject": "Sujet", "people": [ada]}],
         "event": {"title": "Session", "starts": starts, "place": ""}}
        for kind in KINDS
    ]  # fmt: skip
    read = [
        {"kind": kind, "status": status, "subject": "Sujet", "person": ada, "defi": "Bulletins",
         "understood": [{"key": "victories", "heading": "Victoires"},
                        {"key": "other", "heading": "Autre"}],
         "empty": [{"key": "needs", "heading": "Besoins"}]}
        for kind, status in (("answer", "counted"), ("answer", "late"), ("answer", "ambiguous"),
                             ("auto_reply", "recorded"), ("bounce", "recorded"),
                             ("command", "executed"), ("command", "refused"),
                             ("unknown_sender", "recorded"))
    ]  # fmt: skip
    actions = [
        {"kind": "reply", "person": ada, "defi": "Bulletins", "client": "iphone", "inline": True,
         "step": "reminder"},
        {"kind": "out_of_office", "person": bob, "defi": "Open Santé", "client": "",
         "inline": False, "step": "request"},
        {"kind": "command", "person": ada, "defi": "", "subject": "Annonce", "alias": "a@x.test"},
    ]  # fmt: skip
    narrator.tell(
        "moment", time=starts, actions=actions, read=read, groups=groups,
        totals={"count": 28, "accepted": 14, "unsent": 13, "waiting": 1},
        idle=[{"kind": k, "held": h} for k in ("help", "reminder", "staff_digest", "notes")
              for h in (False, True)],
        errors=["boom"],
        deadline={"answered": ["Bulletins"], "away": ["Open Santé"], "silent": ["Archipel"]},
        log="demo/mailflow.log",
    )  # fmt: skip
    (text,) = told
    lines = text.split("\n")
    assert lines[0].startswith("09:30 — ") and all(line.startswith(" " * 8) for line in lines[1:])
    assert len(lines) > 60
    assert not INTERNAL.findall(text)
    for word in ("None", "{", "}", "[", "]", "_"):
        assert word not in text, f"{word!r} in {text}"
