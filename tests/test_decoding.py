"""Every byte people wrote: text through each transfer encoding comes back exactly.

Bodies of every length modulo 3 (so every padding of the last base64 quantum), base64
wrapped at 76, at 64, at 75 characters (quanta split across lines) and not at all, with
CRLF and LF line ends, quoted-printable, 8bit and 7bit, through ``parse_message``; and
one Gmail-like base64 reply through a whole Friday against the real servers.
"""

from __future__ import annotations

import base64
import quopri

import pytest

from mailflow.receiving.mime import decode_base64, decode_bytes
from mailflow.receiving.parse import parse_message

from .conftest import text_of

HEAD = (
    b"From: Camille Martin <camille@bulletins.test>\r\nTo: retro@programme.test\r\n"
    b"Subject: Re: semaine 48\r\nMessage-ID: <every-byte@bulletins.test>\r\n"
    b"MIME-Version: 1.0\r\n"
)


def message(body: bytes, cte: str, charset: str = "utf-8") -> bytes:
    return (
        HEAD
        + (
            f"Content-Type: text/plain; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n"
        ).encode()
        + body
    )


def texts(accent: bool = True) -> list[str]:
    needs = "un accès VPN" if accent else "un acces VPN"
    lines = [f"{'la V1 est en ligne ' * (k // 19)}{'x' * (k % 19 + 1)}" for k in range(160)]
    return [f"Victoires :\n{line}\n\nBesoins :\n{needs}" for line in lines]


def wrapped(data: bytes, width: int | None, newline: bytes = b"\r\n") -> bytes:
    encoded = base64.b64encode(data)
    if width is None:
        return encoded + newline
    lines = [encoded[i : i + width] for i in range(0, len(encoded), width)]
    return newline.join(lines) + newline


def test_the_texts_cover_every_length_modulo_3_and_4():
    lengths = [len(t.encode()) for t in texts()]
    assert {n % 3 for n in lengths} == {0, 1, 2}
    # unpadded encoded length modulo 4: 0, 2 or 3 (1 cannot happen)
    assert {(4 * n // 3 + (n % 3 > 0)) % 4 for n in lengths} == {0, 2, 3}


@pytest.mark.parametrize(
    ("width", "newline"),
    [(76, b"\r\n"), (64, b"\r\n"), (75, b"\r\n"), (None, b"\r\n"), (76, b"\n")],
    ids=["76-crlf", "64-crlf", "75-crlf", "one-line", "76-lf"],
)
def test_base64_bodies_decode_exactly(width, newline):
    for text in texts():
        data = text.replace("\n", "\r\n").encode()
        parsed = parse_message(message(wrapped(data, width, newline), "base64"))
        assert parsed.text == text, (len(data), parsed.text[-20:])
        assert parsed.warnings == (), parsed.warnings


def test_quoted_printable_bodies_decode_exactly():
    for text in texts():
        body = quopri.encodestring(text.encode()).replace(b"\n", b"\r\n")
        parsed = parse_message(message(body, "quoted-printable"))
        assert parsed.text == text
        assert parsed.warnings == ()


@pytest.mark.parametrize(("cte", "accent"), [("8bit", True), ("7bit", False)])
def test_8bit_and_7bit_bodies_decode_exactly(cte, accent):
    charset = "utf-8" if accent else "us-ascii"
    for text in texts(accent):
        parsed = parse_message(message(text.replace("\n", "\r\n").encode(), cte, charset))
        assert parsed.text == text
        assert parsed.warnings == ()


def test_broken_base64_is_recovered_as_far_as_it_goes_and_says_so():
    data = "Besoins : un accès VPN".encode()  # 23 bytes: a padded last quantum
    encoded = base64.b64encode(data)
    warnings: list[str] = []
    assert decode_base64(encoded.rstrip(b"="), warnings) == data  # padding lost: all there
    assert warnings == ["base64 part without its padding: decoded in full"]
    warnings = []
    assert decode_base64(encoded[:-4] + b"!*" + encoded[-4:], warnings) == data
    assert warnings == ["base64 part: 2 characters outside the alphabet ignored"]
    warnings = []
    # Cut after a lone character of the last quantum: what was complete is kept.
    assert decode_base64(encoded[:-3], warnings) == data[:-2]
    assert warnings == ["truncated base64 part: decoded what was complete"]
    warnings = []
    # Two encoded pieces run together, each padded: both decoded.
    assert decode_base64(base64.b64encode(b"ab") + base64.b64encode(b"c"), warnings) == b"abc"


def test_text_cut_inside_its_last_character_stays_utf8():
    data = "Besoins : un accès VPN à Lyon".encode()
    assert decode_bytes(data[:-6], "utf-8") == ("Besoins : un accès VPN ", None)
    assert decode_bytes(data[:-6]) == ("Besoins : un accès VPN ", None)
    # A last byte that proves nothing is latin-1 mislabelled, read as before.
    assert decode_bytes(b"caf\xe9", "utf-8")[0] == "café"


def gmail_base64(request: bytes, sender: str, name: str, body: str) -> bytes:
    """A reply as Gmail sends UTF-8 text: multipart/alternative, both parts base64."""
    from email import message_from_bytes

    original = message_from_bytes(request)
    plain = body.replace("\n", "\r\n").encode()
    html = "".join(f"<div>{line or '<br>'}</div>" for line in body.split("\n")).encode()
    boundary = "000000000000f3c2a1b0e9d8c7b6"
    head = (
        f"From: {name} <{sender}>\r\nTo: {original['Reply-To']}\r\n"
        f"Subject: Re: {original['Subject']}\r\nDate: Fri, 27 Nov 2026 10:12:00 +0100\r\n"
        f"Message-ID: <CAB{len(plain)}x7@mail.gmail.test>\r\n"
        f"In-Reply-To: {original['Message-ID']}\r\nReferences: {original['Message-ID']}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    ).encode()
    parts = b"".join(
        f'--{boundary}\r\nContent-Type: {ctype}; charset="UTF-8"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + wrapped(data, 76)
        for ctype, data in (("text/plain", plain), ("text/html", html))
    )
    return head + parts + f"--{boundary}--\r\n".encode()


def test_a_gmail_base64_reply_reaches_the_digest_whole(programme):
    p = programme({"alpha": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    body = "Victoires :\nla V1 est en production.\n\nBesoins :\nun accès VPN"
    # Two bytes in the last quantum ("PN"): the part a padding bug loses.
    assert len(body.replace("\n", "\r\n").encode()) % 3 == 2
    p.swaks(gmail_base64(p.localmail.fetch(a0)[0], a0, "Alice Alpha", body), a0)
    p.wait_shared(1)
    p.tick("2026-11-27T15:00:00+01:00")
    [digest] = p.inbox(p.config.addresses.cohort)
    text = text_of(digest)
    assert "Alpha : un accès VPN" in text, text
    assert "la V1 est en production." in text
    assert "un accès VPN" in text_of(digest, "html")
