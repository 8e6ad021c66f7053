"""The reading rules one by one: absences, calendar replies, lists, sign-offs, thanks,
Authentication-Results syntax, and the parser's boundary matching."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re

import pytest

from mailflow.programme.workflow import collect_spec
from mailflow.receiving import authresults
from mailflow.receiving.absence import absent_until, looks_away
from mailflow.receiving.bounded import _FeedparserRe
from mailflow.receiving.calendar import read_reply
from mailflow.receiving.lists import author
from mailflow.receiving.parse import ParsedMessage, parse_message
from mailflow.receiving.reply import ReplyContext, extract_reply
from mailflow.receiving.signoff import is_thanks

from .conftest import ROOT

SPEC = collect_spec(ROOT / "workflows")
DECEMBER = dt.date(2026, 12, 18)  # a Friday


@pytest.mark.parametrize(
    ("text", "last_day"),
    [
        ("Je suis absente jusqu'au 4 janvier 2027 inclus.", "2027-01-04"),
        ("Je suis absente jusqu’au 4 janvier 2027 inclus.", "2027-01-04"),
        ("Je serai de retour le lundi 4 janvier.", "2027-01-03"),
        ("en congés du 21/12/2026 au 03/01/2027", "2027-01-03"),
        ("Absent du 21 au 31 décembre, joignable en cas d'urgence.", "2026-12-31"),
        ("I am out of the office until January 4, 2027.", "2027-01-04"),
        ("I'll be back on Monday, January 4th.", "2027-01-03"),
        ("Out of office from 21 December to 3 January.", "2027-01-03"),
        ("Je reprends le 5/01.", "2027-01-04"),
        ("absente jusqu'au 3 janvier exclu", "2027-01-02"),
        ("en congé jusqu'au 1er janvier", "2027-01-01"),
        ("Back in the office on 2027-01-04.", "2027-01-03"),
        ("Je suis absente cette semaine.", None),
        ("Je suis absente jusqu'au 31 février.", None),  # no such day: no date
    ],
)
def test_the_last_day_of_absence(text, last_day):
    found = absent_until([text], DECEMBER)
    assert (found.isoformat() if found else None) == last_day


def test_a_date_without_a_year_needs_the_message_date():
    assert absent_until(["de retour le 4 janvier"], None) is None
    assert absent_until(["de retour le 4 janvier 2027"], None) == dt.date(2027, 1, 3)
    # Sent late (after the 4th, within a week), the 4th is still this one.
    assert absent_until(["de retour le 4 janvier"], dt.date(2027, 1, 6)) == dt.date(2027, 1, 3)
    # A wrong weekday (4 January 2026 is a Sunday) does not move the date a year ahead.
    assert absent_until(["de retour le lundi 4 janvier"], dt.date(2025, 12, 19)) == dt.date(
        2026, 1, 3
    )
    # A day without its month is no date.
    assert absent_until(["jusqu'au vendredi 1er"], DECEMBER) is None


@pytest.mark.parametrize(
    "text",
    [
        "Bonjour,\n\nJe suis absente jusqu'au 4 décembre, avec un accès limité à mes mails.",
        "I'm currently on parental leave with no access to email.",
        "Je suis en congés, de retour le 7 décembre.",
        "Hello, I am out of the office until Monday.",
    ],
)
def test_an_away_text_is_recognised(text):
    assert looks_away(text)


@pytest.mark.parametrize(
    "text",
    [
        "Semaine calme, on avance sur la recette avec les agents.",
        "Je serai absente vendredi prochain, mais voici nos nouvelles : la V2 est en ligne.",
        "We shipped the beta to three regions; back to work on the API next week.",
        "Je suis " + "très " * 300 + "absente jusqu'au 4 janvier.",  # too long for one
    ],
)
def test_an_answer_is_not_taken_for_an_absence(text):
    assert not looks_away(text)


ICS = """BEGIN:VCALENDAR\r
METHOD:{method}\r
PRODID:-//Test//EN\r
BEGIN:VEVENT\r
UID:evt-1@programme.test\r
ATTENDEE;PARTSTAT={partstat};CN="Doe\\, Jane":mailto:Jane@x.test\r
COMMENT:Je serai l\\u00e0\\, promis\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.mark.parametrize(
    ("method", "partstat", "expected"),
    [
        ("REPLY", "ACCEPTED", "accepted"),
        ("REPLY", "tentative", "tentative"),
        ("REPLY", "DECLINED", "declined"),
        ("REPLY", "NEEDS-ACTION", None),  # not an answer
        ("REQUEST", "ACCEPTED", None),  # an invitation, not a reply
    ],
)
def test_calendar_replies(method, partstat, expected):
    found = read_reply([ICS.format(method=method, partstat=partstat)], "jane@x.test")
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found.as_json() == {
            "uid": "evt-1@programme.test", "attendee": "jane@x.test", "partstat": expected,
        }  # fmt: skip
        assert found.comment == "Je serai l\\u00e0, promis"


LIST_HEADERS = {
    "list-id": ["<promo.listes.programme.test>"],
    "list-post": ["<mailto:promo@listes.programme.test>"],
    "x-original-from": ["Chloé Martin <chloe@sante.test>"],
    "reply-to": ["Chloé Martin <chloe@sante.test>"],
}


def test_the_author_behind_a_list_and_only_there():
    munged = ("promo@listes.programme.test", "Chloé Martin via promo")
    assert author(LIST_HEADERS, *munged) == ("chloe@sante.test", "Chloé Martin")
    # The list did not rewrite From: From is the author, whatever Reply-To says.
    assert author(LIST_HEADERS, "lea@x.test", "Léa") == ("lea@x.test", "Léa")
    # Without List-Id, X-Original-From is just a header anyone can write.
    no_list = {k: v for k, v in LIST_HEADERS.items() if not k.startswith("list-")}
    assert author(no_list, *munged) == munged
    # A list whose message keeps no author: From, without the "via" of the name.
    bare = {"list-id": LIST_HEADERS["list-id"], "list-post": LIST_HEADERS["list-post"]}
    assert author(bare, *munged) == ("promo@listes.programme.test", "Chloé Martin")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Besoins :\nun accès VPN\n\nMerci, mais sans accès nous sommes bloqués", "bloqués"),
        ("Besoins :\n- appeler Julien Fabre au 06 12 34 56 78", "06 12 34 56 78"),
        ("Besoins :\nun accès VPN\nDocker", "Docker"),
        ("Victoires :\nLa V2 est en ligne.\n\nBesoins :\nRien", "La V2 est en ligne."),
    ],
)
def test_content_is_never_a_sign_off(text, kept):
    ctx = ReplyContext(sender_name="Julien Fabre", is_heading=SPEC.is_heading)
    assert kept in extract_reply(text, ctx)


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("Besoins :\nun accès VPN\n\nJulien", "Julien"),
        ("Besoins :\nun accès VPN\n\nJF", "JF"),
        ("Besoins :\nun accès VPN\n\nMerci et bon week-end à tous !\nJulien", "week-end"),
        ("Besoins :\nun accès VPN\n\nCordialement, Julien Fabre, DINUM – Etalab", "Etalab"),
        ("Needs:\na VPN\n\nLet me know if anything is unclear.\n\nBest,\nJ.", "Let me know"),
        ("Besoins :\nun accès VPN\n\nJulien Fabre\nChef de projet\n06 12 34 56 78", "Chef"),
    ],
)
def test_sign_offs_are_cut(text, cut):
    ctx = ReplyContext(sender_name="Julien Fabre", is_heading=SPEC.is_heading)
    result = extract_reply(text, ctx)
    assert cut not in result, result
    assert "un accès VPN" in result or "a VPN" in result


@pytest.mark.parametrize(
    ("text", "thanks"),
    [
        ("Merci !", True),
        ("Merci beaucoup, c'est parfait", True),
        ("OK 👍", True),
        ("Merci ! Petite correction : la recette est finie", False),
        ("Super semaine, on a livré la v2 en production.", False),
        ("Correction : la recette est terminée.", False),
    ],
)
def test_a_thank_you_is_told_from_a_correction(text, thanks):
    assert is_thanks(text) is thanks


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        ("mx.programme.test; dkim=pass header.d=x.test header.s=s1", True),
        ("mx.programme.test 1; none", True),
        ('mx.programme.test; dkim=pass reason="good sig" header.i=@x.test', True),
        ("mx.programme.test; dmarc=none action=none header.from=x.test", True),  # Exchange
        ("=?utf-8?q?mx=2Eprogramme=2Etest?=; dkim=pass header.d=x.test", False),
        ("mx.programme.test; dkim=pass header.d==?utf-8?q?x=2Etest?=", False),
        ("mx.programme.test; this is not a result", False),
        ("spf=pass smtp.mailfrom=x.test", False),  # no authserv-id
    ],
)
def test_authentication_results_syntax(header, valid):
    assert authresults.well_formed(header) is valid


def test_an_encoded_authserv_id_is_never_the_trusted_one():
    mx = "mx.programme.test"
    forged = "=?utf-8?q?mx=2Eprogramme=2Etest?=; dkim=pass header.d=programme.test"
    verdict = authresults.check((forged,), "soizic@programme.test", (mx,))
    assert not verdict.ok and verdict.reason == "missing"
    verdict = authresults.check((f"{mx}; dkim=fail", forged), "soizic@programme.test", (mx,))
    assert not verdict.ok and verdict.reason == "fail"


def test_boundaries_match_as_the_compiled_pattern_does():
    shim, rng = _FeedparserRe(), random.Random(7)
    alphabet = "-=_aZ0.+()?*\\ \t'/:"
    tails = ["-", "--", " ", "\t", "\r", "\n", "\r\n", "x", ""]
    for _ in range(2000):
        sep = "--" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        pattern = (
            "(?P<sep>" + re.escape(sep) + r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
        )
        compiled, fast = re.compile(pattern), shim.compile(pattern)
        assert type(fast).__name__ == "_Boundary"
        for head, tail in itertools.product((sep, sep[:-1], "-" + sep), range(8)):
            line = head + "".join(rng.choice(tails) for _ in range(tail % 4))
            expected, got = compiled.match(line), fast.match(line)
            assert bool(expected) == bool(got), (sep, line)
            if expected and got:
                for group in ("end", "ws", "linesep"):
                    assert expected.group(group) == got.group(group), (sep, line, group)
    assert shim.compile(r"\d+").match("12")  # any other pattern: the real one


def test_a_parse_stored_before_authors_were_read_still_loads():
    data = parse_message((ROOT / "tests/corpus/10-outlook-fr-signoff-disclaimer.eml").read_bytes())
    stored = {
        k: v for k, v in data.to_json().items()
        if k not in ("author", "calendar_reply", "absent_until")
    }  # fmt: skip
    loaded = ParsedMessage.from_json(stored)
    assert loaded.author == loaded.from_address == "marie.dupont@numerique.gouv.test"
    assert loaded.calendar_reply is None and loaded.absent_until is None
