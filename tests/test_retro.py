"""The weekly retrospective end to end, against real Dovecot and aiosmtpd.

A simulated Friday driven by ``mailflow tick --at``: requests delivered to every member,
replies sent by swaks as Gmail, Outlook and Thunderbird format them, an out-of-office
and a bounce, reminders only to the défis that had not answered, the digest read back
from the cohort's mailbox. Every tick runs twice: nothing is sent twice.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

from mailflow.localmail import clients
from mailflow.sending import tokens

from .conftest import ROOT, text_of

FRIDAY = "2026-11-27"  # week 48


def at(time: str, day: str = FRIDAY) -> str:
    return f"{day}T{time}:00+01:00"


def mailbox_counts(p, defis=None):
    return {d: [len(p.inbox(m)) for m in p.defis[d]] for d in defis or p.defis}


def test_a_whole_friday(programme):
    p = programme({"alpha": 2, "beta": 2, "gamma": 2, "delta": 1, "epsilon": 1})

    # 09:00: one request per défi, to all its members.
    for _ in range(2):
        p.tick(at("09:00"))
    assert mailbox_counts(p) == {d: [1] * len(m) for d, m in p.defis.items()}
    request = p.inbox(p.defis["alpha"][0])[0]
    assert "semaine 48" in str(request["Subject"]) or "semaine 48" in text_of(request)
    assert request["Auto-Submitted"] == "auto-generated"
    assert request["X-Auto-Response-Suppress"] == "All"
    assert request["Reply-To"] == p.shared
    assert "Victoires :" in text_of(request) and "Victoires" in text_of(request, "html")
    token = tokens.read("test-secret", request["Message-ID"])
    assert token == tokens.Token("retro", "2026-W48", "request", "d-alpha")

    def request_for(member):
        return p.localmail.fetch(member)[0]

    # Replies as real clients write them, sent by swaks; an out-of-office; a bounce.
    a0, b0, c1, d0 = (
        p.defis["alpha"][0],
        p.defis["beta"][0],
        p.defis["gamma"][1],
        p.defis["delta"][0],
    )
    p.swaks(clients.gmail(request_for(a0), a0, "Alice Alpha", (
        "Bonjour,\n\nVictoires :\n- la V1 est en production\n\nDifficultés :\nRAS\n\n"
        "Besoins :\nun contact à la CNIL pour l'analyse d'impact\n\nBonne journée,\nAlice"
    )), a0)  # fmt: skip
    p.swaks(clients.outlook(request_for(b0), b0, "Bruno Beta", (
        "Bonjour,\n\nVictoires : démo validée par le comité\nDifficultés : accès aux données"
        " toujours bloqué\nBesoins : aucun\n\nCordialement,\nBruno Beta\nChef de projet"
    )), b0)  # fmt: skip
    p.swaks(clients.thunderbird(request_for(c1), c1, "Gaëlle Gamma", "", inline={
        "Victoires :": "Premier utilisateur externe !",
        "Besoins :": "Un retour design sur les maquettes.",
    }), c1)  # fmt: skip
    p.swaks(clients.out_of_office(request_for(d0), d0, "Denis Delta"), d0)
    p.swaks(clients.bounce(request_for(b0), p.defis["beta"][1]), "")
    p.wait_shared(5)

    # 12:00: each answer gets a receipt (to its sender only); reminders go only to the
    # défis with no answer. Delta's out-of-office is no answer, but says its only member
    # is away until 7 December: delta is not reminded.
    for _ in range(2):
        p.tick(at("12:00"))
    assert mailbox_counts(p) == {
        "alpha": [2, 1], "beta": [2, 1], "gamma": [1, 2], "delta": [1], "epsilon": [2],
    }  # fmt: skip
    receipt = text_of(p.inbox(a0)[1])
    assert "Bien reçu" in str(p.inbox(a0)[1]["Subject"])
    assert "la V1 est en production" in receipt and "un contact à la CNIL" in receipt
    reminder = p.inbox(p.defis["epsilon"][0])[1]
    assert "Rappel" in str(reminder["Subject"])

    # epsilon answers the reminder; delta never does.
    e0 = p.defis["epsilon"][0]
    p.swaks(clients.gmail(p.localmail.fetch(e0)[1], e0, "Emma Epsilon", (
        "Victoires :\nles agents utilisent le tableau de bord\n\nBesoins :\nun hébergement"
        " SecNumCloud\n\nDate clé à annoncer : comité de pilotage le 15 décembre"
    )), e0)  # fmt: skip
    p.wait_shared(6)
    for _ in range(2):
        p.tick(at("14:00"))
    assert mailbox_counts(p, ["delta", "epsilon", "alpha"]) == {
        "delta": [1],
        "epsilon": [3],
        "alpha": [2, 1],
    }
    for _ in range(2):
        p.tick(at("14:30"))

    # 15:00: the digest to the cohort, the needs to the staff.
    for _ in range(2):
        p.tick(at("15:00"))
    [digest] = p.inbox(p.config.addresses.cohort)
    text = text_of(digest)
    for phrase in ("la V1 est en production", "un contact à la CNIL", "démo validée par le comité",
                   "accès aux données toujours bloqué", "Premier utilisateur externe !",
                   "Un retour design sur les maquettes.", "un hébergement SecNumCloud",
                   "comité de pilotage le 15 décembre"):  # fmt: skip
        assert phrase in text, phrase
    assert "Bonne journée" not in text and "Chef de projet" not in text and "a écrit" not in text
    # Needs come first, with the défi's name; the défis away, then those without news, last.
    needs, blocks, missing = (
        text.index("BESOINS"),
        text.index("LES DÉFIS"),
        text.index("SANS NOUVELLES"),
    )
    assert needs < text.index("Alpha : un contact à la CNIL") < blocks < missing
    assert text.index("Epsilon : un hébergement SecNumCloud") < blocks
    away = text.index("ABSENTS")
    assert blocks < away < missing and "Alpha" not in text[away:]
    assert (
        "* Delta : toute l'équipe est absente jusqu'au lundi 7 décembre 2026 inclus"
        in (text[away:missing])
    )
    assert "Delta" not in text[missing:]  # away, not "without news"
    assert "4 défis sur 5 ont répondu" in text
    html = text_of(digest, "html")
    assert "un contact à la CNIL" in html and "<h2" in html

    staff_mail = [m for m in p.inbox(p.staff[0]) if "Besoins" in str(m["Subject"])]
    assert len(staff_mail) == 1
    staff_text = text_of(staff_mail[0])
    assert "un contact à la CNIL" in staff_text
    assert p.defis["beta"][1] in staff_text  # the bounced address, flagged for the staff

    # Nothing was sent twice: every mailbox holds exactly what it should.
    assert mailbox_counts(p) == {
        "alpha": [2, 1], "beta": [2, 1], "gamma": [1, 2], "delta": [1], "epsilon": [3],
    }  # fmt: skip
    assert len(p.inbox(p.config.addresses.cohort)) == 1
    status = p.run("status", "--week", "2026-W48").output
    assert "[x] Alpha" in status and "[ ] Delta : pas de réponse" in status
    assert f"{d0} (Delta) : absent·e jusqu'au lundi 7 décembre inclus, d'après sa réponse" in status


def test_a_late_answer_goes_into_the_next_digest(programme):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    p.tick(at("09:00"))
    a0, b0, c0 = p.defis["alpha"][0], p.defis["beta"][0], p.defis["gamma"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice", "Victoires :\nà l'heure"), a0)
    p.wait_shared(1)
    p.tick(at("15:00"))
    # beta and gamma answer their week 48 request after the digest: late, shown next Friday;
    # gamma's answer has no headings, and is shown as written.
    p.swaks(
        clients.gmail(p.localmail.fetch(b0)[0], b0, "Bob", "Victoires :\nen retard mais là"), b0
    )
    p.swaks(
        clients.gmail(p.localmail.fetch(c0)[0], c0, "Chloé", "Semaine calme, le pilote avance."),
        c0,
    )
    p.wait_shared(3)
    p.tick(at("16:00"))
    first = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "en retard mais là" not in first
    for time in ("09:00", "15:00"):
        p.tick(at(time, "2026-12-04"))
    second = text_of(p.inbox(p.config.addresses.cohort)[1])
    assert "ARRIVÉES APRÈS LE DERNIER RÉCAPITULATIF" in second
    assert "en retard mais là" in second and "(semaine 48)" in second
    late_block = second[second.index("--- Gamma") :]
    assert "Semaine calme, le pilote avance." in late_block.split("SANS NOUVELLES")[0]
    exported = json.loads(p.run("export", "--format", "json").output)
    assert [(r["respondent"], r["occurrence"], r["status"]) for r in exported] == [
        ("alpha", "2026-W48", "counted"), ("beta", "2026-W48", "late"),
        ("gamma", "2026-W48", "late"),
    ]  # fmt: skip


def test_latest_answer_before_the_digest_wins_and_non_members_are_flagged(programme, new_address):
    p = programme({"alpha": 2})
    p.tick(at("09:00"))
    a0, a1 = p.defis["alpha"]
    outsider = new_address("outsider")
    request = p.localmail.fetch(a0)[0]
    p.swaks(clients.gmail(request, a0, "A", "Victoires :\npremière version"), a0)
    p.swaks(clients.gmail(request, a1, "B", "Victoires :\nversion corrigée"), a1)
    # Someone outside the défi answers the request forwarded to them: kept, flagged, not counted.
    p.swaks(clients.gmail(request, outsider, "X", "Victoires :\nje ne suis pas membre"), outsider)
    p.wait_shared(3)
    p.tick(at("15:00"))
    text = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "version corrigée" in text
    assert "première version" not in text and "je ne suis pas membre" not in text
    staff = text_of(next(m for m in p.inbox(p.staff[0]) if "Besoins" in str(m["Subject"])))
    assert outsider in staff


def test_replying_to_the_receipt_corrects_the_answer(programme):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nune vicoire"), a0)
    p.wait_shared(1)
    p.tick(at("10:00"))
    receipt = p.localmail.fetch(a0)[1]
    assert "une vicoire" in text_of(p.inbox(a0)[1])
    p.swaks(clients.outlook(receipt, a0, "A", "Victoires : une victoire, sans faute"), a0)
    p.swaks(clients.out_of_office(receipt, a0, "A"), a0)  # never answered, never counted
    p.wait_shared(3)
    p.tick(at("11:00"))
    p.tick(at("15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "une victoire, sans faute" in digest and "une vicoire" not in digest
    assert len(p.inbox(a0)) == 3  # request, two receipts; nothing in answer to the out-of-office


def test_a_holiday_friday_moves_the_cycle_to_thursday(programme):
    p = programme({"alpha": 1})
    # Friday 25 December 2026 is Christmas: the cycle happens on Thursday the 24th.
    result = p.tick(at("09:00", "2026-12-24"))
    assert "retro 2026-W52 request: done, 1 queued" in result.output
    [request] = p.inbox(p.defis["alpha"][0])
    assert "exceptionnellement jeudi 24 décembre" in text_of(request)
    for time in ("12:00", "14:00", "15:00"):
        p.tick(at(time, "2026-12-24"))
    assert len(p.inbox(p.config.addresses.cohort)) == 1
    assert len(p.inbox(p.defis["alpha"][0])) == 3  # request and two reminders, all on Thursday
    for time in ("09:00", "12:00", "15:00"):
        assert "queued" not in p.tick(at(time, "2026-12-25")).output


def test_reply_content_is_data_never_template(programme):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    body = "Victoires :\n{{ 7*7 }} et {% raw %} <script>alert('x')</script> & co"
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", body), a0)
    p.wait_shared(1)
    p.tick(at("15:00"))
    digest = p.inbox(p.config.addresses.cohort)[0]
    text, html = text_of(digest), text_of(digest, "html")
    assert "{{ 7*7 }} et {% raw %} <script>alert('x')</script> & co" in text
    assert "49" not in text
    assert (
        "{{ 7*7 }}" in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in html
    )
    assert "<script>" not in html


def test_a_reply_written_with_mutt_is_counted(programme):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    p.mutt(a0, "Alice Alpha", p.localmail.fetch(a0)[0], (
        "Victoires :\nla V1 est livrée à la préfecture\n\nBesoins :\nun accès à la base SIRENE\n\n"
        "-- \nAlice\n\nLe 27/11/2026 à 09:00, Programme a écrit :\n> Victoires :"
    ))  # fmt: skip
    p.wait_shared(1)
    p.tick(at("15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "Alpha : un accès à la base SIRENE" in digest and "la V1 est livrée" in digest


def test_english_défis_get_english_mail(programme):
    p = programme({"alpha": 1, "beta": 1}, languages={"beta": "en"})
    p.tick(at("09:00"))
    assert "Victoires :" in text_of(p.inbox(p.defis["alpha"][0])[0])
    english = p.inbox(p.defis["beta"][0])[0]
    assert "Week 48 retrospective" in str(english["Subject"])
    assert "Victories:" in text_of(english)


def test_digest_preview_sends_nothing(programme, tmp_path):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Besoins :\nun avis juridique"), a0)
    p.wait_shared(1)
    p.tick(at("10:00"))
    preview = p.run("digest", "--week", "2026-W48", "--preview")
    assert preview.exit_code == 0, preview.output
    assert "Alpha : un avis juridique" in preview.output
    out = tmp_path / "digest.html"
    assert p.run("digest", "--week", "2026-W48", "--preview", "--html", str(out)).exit_code == 0
    assert "un avis juridique" in out.read_text()
    assert p.inbox(p.config.addresses.cohort) == []


def test_tick_uses_the_programme_time_zone_for_naive_instants(programme):
    p = programme({"alpha": 1})
    result = p.tick("2026-11-27T09:00")  # 09:00 in Europe/Paris
    assert "request: done" in result.output
    engine = p.engine()
    row = engine.db.execute("select due_at from runs").fetchone()
    assert dt.datetime.fromisoformat(row[0]) == dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)


def test_the_gazette_asks_the_staff_and_sends_their_news_to_the_cohort(programme, tmp_path):
    workflows = tmp_path / "only-gazette"
    workflows.mkdir()
    shutil.copy(ROOT / "workflows" / "gazette.toml", workflows)
    p = programme({"alpha": 1}, mailflow={"workflows": str(workflows)})
    s0, s1 = p.staff
    # November 2026: the last working day is Monday the 30th; five working days before
    # is Monday the 23rd, two working days before is Thursday the 26th.
    assert "gazette 2026-11 request: done, 2 queued" in p.tick("2026-11-23T10:00:00+01:00").output
    request = p.inbox(s0)[0]
    assert "La gazette de novembre 2026" in str(request["Subject"])
    p.swaks(clients.thunderbird(p.localmail.fetch(s0)[0], s0, "Staff Zero", (
        "Nouvelles :\nLe bootcamp de janvier est confirmé à Lyon.\n\nBravo :\nÀ l'équipe Alpha"
        " pour sa mise en production !"
    )), s0)  # fmt: skip
    p.wait_shared(1)
    p.tick("2026-11-26T10:00:00+01:00")
    assert [len(p.inbox(s)) for s in (s0, s1)] == [1, 2]  # the reminder only to who did not answer
    p.tick("2026-11-30T16:00:00+01:00")
    [gazette] = p.inbox(p.config.addresses.cohort)
    text = text_of(gazette)
    assert "Le bootcamp de janvier est confirmé à Lyon." in text
    assert "(Staff)" in text and "mise en production" in text
    assert text.index("NOUVELLES") < text.index("BRAVO") and "AGENDA" not in text


def test_a_thank_you_to_the_receipt_keeps_the_answer_and_free_text_is_shown(programme):
    p = programme({"alpha": 1, "beta": 1})
    p.tick(at("09:00"))
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Besoins :\nun contact à la CNIL"), a0)
    p.swaks(
        clients.gmail(
            p.localmail.fetch(b0)[0], b0, "B", "Semaine calme, on avance sur la recette."
        ),
        b0,
    )
    p.wait_shared(2)
    p.tick(at("10:00"))
    p.swaks(clients.gmail(p.localmail.fetch(a0)[1], a0, "A", "Merci !"), a0)
    p.wait_shared(3)
    p.tick(at("11:00"))
    p.tick(at("15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "Alpha : un contact à la CNIL" in digest
    assert "Semaine calme, on avance sur la recette." in digest
