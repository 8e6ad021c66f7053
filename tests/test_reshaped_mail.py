"""Mail that servers and lists reshape, against real Dovecot and aiosmtpd.

A signed reply and one relayed by a list that rewrote From are counted for their author;
an out-of-office without any marker is not an answer; a correction without headings
replaces an answer without headings; an Authentication-Results header written as an
encoded word never lets a command through.
"""

from __future__ import annotations

import base64
import sqlite3

import pytest

from mailflow.localmail import clients

from .conftest import text_of
from .test_alias import MX, command, passing, settle

FRIDAY = "2026-11-27"
LIST = "promo@listes.programme.test"


@pytest.fixture
def staffed(programme):
    def make():
        return programme({"alpha": 1}, security={"trusted_authserv_ids": [MX]})

    return make


def at(time: str) -> str:
    return f"{FRIDAY}T{time}:00+01:00"


def split(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\n\n") if b"\r\n\r\n" not in raw else raw.partition(b"\r\n\r\n")
    return head.replace(b"\r\n", b"\n"), body.replace(b"\r\n", b"\n")


def signed(raw: bytes) -> bytes:
    """``raw`` S/MIME clear-signed as Thunderbird sends it: its body the signed part."""
    head, body = split(raw)
    lines = head.split(b"\n")
    content, outer, i = [], [], 0
    while i < len(lines):
        field = [lines[i]]
        while i + 1 < len(lines) and lines[i + 1][:1] in (b" ", b"\t"):
            i += 1
            field.append(lines[i])
        name = field[0].split(b":", 1)[0].lower()
        (content if name.startswith(b"content-") else outer).append(b"\n".join(field))
        i += 1
    signature = base64.encodebytes(bytes(range(256)) * 4)
    return b"\n".join([
        *[f for f in outer if not f.lower().startswith(b"mime-version")],
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        b' micalg=sha-256; boundary="------------ms0501"',
        b"",
        b"This is a cryptographically signed message in MIME format.",
        b"",
        b"--------------ms0501",
        *content,
        b"",
        body.rstrip(b"\n"),
        b"--------------ms0501",
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="smime.p7s"',
        b"",
        signature.rstrip(b"\n"),
        b"--------------ms0501--",
        b"",
    ])  # fmt: skip


def through_the_list(raw: bytes, author: str, name: str) -> bytes:
    """``raw`` as Sympa relays it for a domain with a strict DMARC policy."""
    head, body = split(raw)
    kept = [
        line for line in head.split(b"\n") if not line.lower().startswith((b"from:", b"reply-to:"))
    ]
    added = [
        f"From: {name} via promo <{LIST}>",
        f"X-Original-From: {name} <{author}>",
        f"Reply-To: {name} <{author}>",
        "List-Id: <promo.listes.programme.test>",
        f"List-Post: <mailto:{LIST}>",
        "List-Unsubscribe: <mailto:sympa@listes.programme.test?subject=unsubscribe%20promo>",
        "Precedence: list",
    ]
    return b"\n".join([*kept, *(a.encode() for a in added)]) + b"\n\n" + body


def test_a_signed_reply_and_a_list_relayed_one_count_for_their_authors(programme):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    p.tick(at("09:00"))
    a0, b0, c0 = (p.defis[d][0] for d in ("alpha", "beta", "gamma"))
    reply = clients.thunderbird(
        p.localmail.fetch(a0)[0], a0, "Alice Alpha",
        "Victoires :\nla signature électronique est en place\n\nAlice",
    )  # fmt: skip
    p.swaks(signed(reply), a0)
    relayed = clients.gmail(
        p.localmail.fetch(b0)[0], b0, "Bruno Beta",
        "Besoins :\nun accès au bac à sable FranceConnect\n\nMerci et bon week-end,\nBruno",
    )  # fmt: skip
    p.swaks(through_the_list(relayed, b0, "Bruno Beta"), LIST)
    p.wait_shared(2)
    p.tick(at("10:00"))
    rows = sqlite3.connect(p.config.database).execute(
        "select sender, respondent, status from inbound order by message"
    )
    assert sorted(rows) == [(a0, "d-alpha", "counted"), (b0, "d-beta", "counted")]
    # The receipt goes to the author, never to the list (the whole cohort).
    assert "accès au bac à sable FranceConnect" in text_of(p.inbox(b0)[1])
    assert "smime.p7s" not in text_of(p.inbox(a0)[1])
    p.tick(at("12:00"))  # the reminder: only the défi that did not answer
    assert [len(p.inbox(m)) for m in (a0, b0, c0)] == [2, 2, 2]
    p.tick(at("15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "la signature électronique est en place" in digest
    assert "Beta : un accès au bac à sable FranceConnect" in digest
    assert "Bruno" not in digest.split("SANS NOUVELLES")[0].replace("Bruno Beta", "")
    assert "Merci et bon week-end" not in digest


def test_an_out_of_office_without_markers_is_not_an_answer(programme):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    # A server-side filter's reply: a plain "Re:", no Auto-Submitted, no X-Autoreply.
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice Alpha", (
        "Bonjour,\n\nJe suis absente jusqu'au 4 décembre inclus, avec un accès limité à mes "
        "mails.\n\nAlice"
    )), a0)  # fmt: skip
    p.wait_shared(1)
    p.tick(at("10:00"))
    db = sqlite3.connect(p.config.database)
    assert db.execute("select kind, data from inbound").fetchall() == [
        ("auto_reply", '{"absent_until": "2026-12-04"}')
    ]
    assert len(p.inbox(a0)) == 1  # no receipt
    p.tick(at("12:00"))
    assert len(p.inbox(a0)) == 1  # away until 4 December, as it says: not reminded
    p.tick(at("15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "accès limité" not in digest and "Alpha" not in digest.split("SANS NOUVELLES")[1]
    assert "* Alpha : toute l'équipe est absente jusqu'au vendredi 4 décembre 2026" in digest


def test_a_correction_without_headings_replaces_an_answer_without_headings(programme):
    p = programme({"alpha": 1})
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    first = "Semaine calme, on avance sur la recette avec les agents."
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice Alpha", first), a0)
    p.wait_shared(1)
    p.tick(at("10:00"))
    receipt = p.inbox(a0)[1]
    assert first in text_of(receipt) and "(rien)" not in text_of(receipt)
    second = "Correction : la recette est terminée, la mise en production est prévue lundi."
    p.swaks(clients.outlook(p.localmail.fetch(a0)[1], a0, "Alice Alpha", second), a0)
    p.wait_shared(2)
    p.tick(at("11:00"))
    assert second in text_of(p.inbox(a0)[2])  # the receipt shows what the digest will
    # A thank-you to that receipt keeps the correction.
    p.swaks(clients.gmail(p.localmail.fetch(a0)[2], a0, "Alice Alpha", "Merci !"), a0)
    p.wait_shared(3)
    p.tick(at("12:00"))
    p.tick(at("15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert second in digest and first not in digest and "Merci !" not in digest
    exported = p.run("export", "--format", "json").output
    assert exported.count('"superseded_by": null') == 1 and first in exported


def test_an_encoded_authentication_results_never_authorises_a_command(staffed):
    p = staffed()
    sender = p.staff[0]
    domain = sender.split("@")[1]
    # The MX's own header says nothing passed; below it, one the sender wrote as an
    # encoded word, which that MX did not recognise as bearing its id and so kept.
    forged = "=?utf-8?q?" + MX.replace(".", "=2E") + f"?=; dkim=pass header.d={domain}"
    command(p, sender, "Annonce", "Réunion annulée !", [forged])
    command(p, sender, "Annonce", "Réunion maintenue !", [f"{MX}; dkim=none", forged])
    settle(p, 2, "2026-11-26T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from announcements").fetchone() == (0,)
    assert db.execute("select status from commands").fetchall() == [("refused",), ("refused",)]
    # The same command, authenticated by the MX, goes through: the refusal was the header.
    command(p, sender, "Annonce", "Réunion déplacée à jeudi.", [passing(sender)])
    settle(p, 3, "2026-11-26T11:00:00+01:00")
    assert db.execute("select count(*) from announcements").fetchone() == (1,)
