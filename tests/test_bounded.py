"""Parsing within bounds: hostile and merely large messages, in time, memory and content.

Each hostile message (``mailflow.localmail.hostile``) parses in well under two seconds
with its sender and thread kept; the reduced reading of large messages gives exactly
what the direct one gives on the whole corpus; ingest of a 24.6 MB message stays under
200 MB of peak memory, measured in a fresh process.
"""

from __future__ import annotations

import email.policy
import random
import subprocess
import sys
import time
import unicodedata
from email.message import EmailMessage, MIMEPart

import pytest

from mailflow.localmail import hostile
from mailflow.localmail.samples import sample_replies
from mailflow.programme.workflow import collect_spec
from mailflow.receiving import bounded
from mailflow.receiving.parse import MAX_DISPLAY, parse_message

from .conftest import ENV, ROOT, corpus_files

SPEC = collect_spec(ROOT / "workflows")


def timed(raw: bytes):
    start = time.perf_counter()
    parsed = parse_message(raw, SPEC)
    return parsed, time.perf_counter() - start


@pytest.mark.parametrize("name", list(hostile.MESSAGES))
def test_hostile_messages_parse_in_time_with_sender_and_thread(name):
    parsed, seconds = timed(hostile.MESSAGES[name]())
    print(f"{name}: {seconds:.2f} s")
    assert seconds < 2
    assert parsed.from_address == hostile.FROM
    assert parsed.in_reply_to == (hostile.REQUEST_ID,)
    assert parsed.references == (hostile.REQUEST_ID,)
    assert len(parsed.subject) <= MAX_DISPLAY
    assert len(parsed.text) <= 100_000
    if name == "nesting-5000":  # the text is 5,000 levels down: not read
        assert "MIME nesting deeper than 50 levels: ignored below" in parsed.warnings
    else:
        assert (parsed.sections["needs"] or "").startswith("un accès VPN")
    if name == "base64-text-24MB":  # cut in the middle of the text, still UTF-8
        assert "accentué, très longue" in parsed.text and "Ã" not in parsed.text
    if name == "subject-30MB":
        assert parsed.subject.startswith("Re: semaine 48") and parsed.subject.endswith("…")


def test_reading_reduced_gives_what_reading_directly_gives(monkeypatch):
    """Every corpus message and a sample of replies, read through the reducer."""
    messages = [p.read_bytes() for p in corpus_files()] + sample_replies(40, seed=11)
    direct = [parse_message(raw, SPEC).to_json() for raw in messages]
    monkeypatch.setattr(bounded, "LARGE", 0)
    for raw, expected in zip(messages, direct, strict=True):
        assert parse_message(raw, SPEC).to_json() == expected


WORDS = ["Victoires :", "la démo", "Besoins :", "un accès VPN", "Difficultés :", "RAS", "Humeur :"]


def _random_part(rng: random.Random, depth: int) -> MIMEPart:
    """A random MIME tree: text and HTML (base64, quoted-printable), attachments, messages."""
    part = MIMEPart(policy=email.policy.SMTP)
    text = "\n".join(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(3))
    kind = rng.random() if depth else rng.random() * 0.8
    cte = rng.choice(["base64", "quoted-printable"])
    if kind < 0.3:
        part.set_content(text, cte=cte)
    elif kind < 0.45:
        part.set_content(f"<p>{text}</p>", subtype="html", cte=cte)
    elif kind < 0.6:
        data = rng.randbytes(rng.randint(10, 400))
        part.set_content(data, maintype="application", subtype="pdf", filename="cr.pdf")
    elif kind < 0.8:
        inner = EmailMessage(policy=email.policy.SMTP)
        inner["From"], inner["Subject"] = "Léa <lea@geocarto.test>", "Tr: semaine 48"
        inner.set_content(text, cte="quoted-printable")
        part.set_content(inner)
    else:
        part.set_type(f"multipart/{rng.choice(['mixed', 'alternative', 'related', 'digest'])}")
        for _ in range(rng.randint(1, 4)):
            part.attach(_random_part(rng, depth - 1))
        part.preamble = "This is a multi-part message." if rng.random() < 0.3 else None
        part.epilogue = "epilogue" if rng.random() < 0.3 else None
    return part


def test_reading_reduced_gives_what_reading_directly_gives_on_random_structures(monkeypatch):
    rng = random.Random(20261127)
    messages = []
    for i in range(150):
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"], msg["Subject"] = "Camille <camille@bulletins.test>", "Re: semaine 48"
        msg["Message-ID"] = f"<random-{i}@bulletins.test>"
        top = _random_part(rng, rng.randint(1, 5))
        msg.set_type(top.get_content_type())
        msg.set_payload(top.get_payload())
        messages.append(msg.as_bytes())
    direct = [parse_message(raw, SPEC).to_json() for raw in messages]
    monkeypatch.setattr(bounded, "LARGE", 0)
    for raw, expected in zip(messages, direct, strict=True):
        assert parse_message(raw, SPEC).to_json() == expected


def test_a_large_message_keeps_its_text_and_the_names_of_its_attachments():
    parsed, seconds = timed(hostile.with_attachments())
    assert seconds < 2
    assert parsed.sections["victories"] == "ça avance"
    assert "doc1.pdf" in parsed.attachments and "photo.png" in parsed.attachments


def test_a_bare_cr_or_lf_in_the_header_loses_nothing():
    for bare in (b"\r", b"\n"):
        raw = (
            b'From: "Camille' + bare + b'Martin" <camille@bulletins.test>\r\n'
            b"To: retro@programme.test\r\nSubject: Re: semaine" + bare + b"48\r\n"
            b"Message-ID: <bare@bulletins.test>\r\n"
            b"In-Reply-To: <retro.2026-W48.request.d3@programme.test>\r\n\r\n"
            b"Victoires :\r\nla recette est finie\r\n"
        )
        parsed = parse_message(raw, SPEC)
        assert parsed.from_address == "camille@bulletins.test", bare
        assert parsed.from_name == "Camille Martin"
        assert parsed.subject == "Re: semaine 48"
        assert parsed.in_reply_to == ("<retro.2026-W48.request.d3@programme.test>",)
        assert parsed.sections["victories"] == "la recette est finie"


def test_a_lf_message_with_a_bare_cr_in_from():
    raw = (
        b'From: "Camille\rMartin" <camille@bulletins.test>\nSubject: Re: semaine 48\n'
        b"Message-ID: <lf@bulletins.test>\n\nVictoires :\nfini\n"
    )
    parsed = parse_message(raw, SPEC)
    assert (parsed.from_address, parsed.subject) == ("camille@bulletins.test", "Re: semaine 48")


def test_long_header_values_are_cut_and_the_nearest_reference_kept():
    refs = " ".join(f"<ref{i}@programme.test>" for i in range(2000))  # 40 KB
    filename = "a;" * 30_000  # parameters parse in quadratic time when left whole
    raw = (
        b"From: " + b"Camille " * 2000 + b"<camille@bulletins.test>\r\n"
        b"Subject: Re: semaine 48\r\nReferences: " + refs.encode() + b"\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nVictoires :\r\nfini\r\n"
        b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
        + filename.encode()
        + b'"\r\n\r\nJVBERi0=\r\n--b--\r\n'
    )
    parsed, seconds = timed(raw)
    assert seconds < 1
    assert parsed.thread_ids[0] == "<ref1999@programme.test>"
    assert len(parsed.from_name) <= MAX_DISPLAY and parsed.from_name.endswith("…")
    assert parsed.sections["victories"] == "fini"
    assert "references header longer than 8,000 characters: cut" in parsed.warnings


def test_a_flood_of_parts_or_headers_is_bounded():
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(50_000))
    raw = (
        b"From: camille@bulletins.test\r\nSubject: parts\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    )
    parsed, seconds = timed(raw)
    assert seconds < 2
    assert f"more than {bounded.MAX_PARTS} MIME parts: the others ignored" in parsed.warnings
    headers = b"".join(b"X-A: %d\r\n" % i for i in range(150_000))  # under 1 MB
    parsed, seconds = timed(b"From: camille@bulletins.test\r\n" + headers + b"\r\nhello\r\n")
    assert seconds < 2 and parsed.from_address == "camille@bulletins.test"


def test_large_html_is_converted_within_bounds():
    html = "<div><p>Bonjour <b>à tous</b></p><blockquote>cité</blockquote></div>" * 150_000
    raw = (
        b"From: camille@bulletins.test\r\nSubject: html\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html.encode()
    )
    parsed, seconds = timed(raw)
    assert seconds < 2
    assert parsed.from_html and parsed.text.startswith("Bonjour à tous")


def test_control_characters_never_reach_what_is_read():
    raw = (
        "From: Cam\x07ille <camille@bulletins.test>\r\nSubject: Re:\x1b[31m semaine 48\r\n"
        "Message-ID: <ctl@bulletins.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Victoires :\r\nla d\x00émo\x07 a marché\x1b[0m\r\n\x0c\r\nDifficultés :\r\n"
        "\x7fle serveur\x08 tombe\r\n\r\nHumeur : \x1bcontents\x85\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>ignored</p>\r\n--b--\r\n"
    ).encode()
    parsed = parse_message(raw, SPEC)
    read = [parsed.text, parsed.subject, parsed.from_name, *parsed.sections.values(),
            *parsed.fields.values()]  # fmt: skip
    for value in read:
        assert not any(unicodedata.category(c) == "Cc" and c not in "\t\n" for c in value or "")
    assert parsed.sections["victories"] == "la démo a marché[0m"
    assert parsed.sections["difficulties"] == "le serveur tombe"
    assert parsed.fields["mood"] == "contents"


def test_a_long_run_of_letters_in_a_bounce_is_read_in_linear_time():
    raw = b"From: postmaster@relay.test\r\nSubject: Undeliverable: semaine 48\r\n\r\n"
    parsed, seconds = timed(raw + b"a" * 90_000 + b" camille@bulletins.test\r\n")
    assert seconds < 1
    assert (parsed.automatic, parsed.bounced_recipient) == ("bounce", "camille@bulletins.test")


def _peak_mb(code: str, *args: str) -> tuple[float, str]:
    """Peak RSS of ``code`` run in a fresh process forked from a small one (a child's
    ru_maxrss starts from its parent's size at fork time, and pytest is large)."""
    runner = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    measured = f"{code}\nimport resource\nprint('peak', resource.getrusage(0).ru_maxrss)"
    result = subprocess.run(
        [sys.executable, "-c", runner, sys.executable, "-c", measured, *args],
        capture_output=True, text=True, env={**ENV, "PATH": "/usr/bin:/bin"}, check=True,
    )  # fmt: skip
    peak = int(result.stdout.rsplit("peak ", 1)[1]) / 1024
    return peak, result.stdout


def test_ingest_of_a_message_just_under_the_limit_stays_under_200_mb(localmail, make_config):
    config = make_config()
    localmail.append(config.imap.username, [hostile.with_attachments(24.6)])
    code = (
        "import json, sys, time\n"
        "from mailflow.config import load_config\nfrom mailflow.store.db import open_db\n"
        "from mailflow.receiving.ingest import ingest\n"
        "config = load_config(sys.argv[1], {'MAILFLOW_IMAP_PASSWORD': 'secret'})\n"
        "db = open_db(config.database)\nstart = time.perf_counter()\n"
        "report = ingest(db, config.imap)\n"
        "print('seconds', time.perf_counter() - start, 'parsed', report.parsed)\n"
    )
    peak, output = _peak_mb(code, str(config.path))
    print(f"ingest of 24.6 MB: peak RSS {peak:.0f} MB; {output.splitlines()[0]}")
    assert "parsed 1" in output
    assert peak < 200
