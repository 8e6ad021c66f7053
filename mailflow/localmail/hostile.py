"""Messages crafted to choke a careless parser, for tests and benchmarks.

Each builder returns the raw bytes of an outsider's answer to a retrospective request,
whose needs end "un accès VPN": a 30 MB subject, 5,000 MIME nesting levels, 100,000
header lines (the From after them), a 24 MB base64 text part, a 24.6 MB message with
attachments. ``MESSAGES`` maps a short name to each builder.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

MB = 1024 * 1024
FROM = "mallory@outside.test"
REQUEST_ID = "<retro.2026-W48.request@programme.test>"
TEXT = "Victoires :\nça avance\n\nBesoins :\nun accès VPN\n"


def head(name: str) -> bytes:
    return (
        f"From: Mallory <{FROM}>\r\nTo: retro@programme.test\r\n"
        f"Message-ID: <hostile-{name}@outside.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n"
        f"In-Reply-To: {REQUEST_ID}\r\nReferences: {REQUEST_ID}\r\n"
    ).encode()


def part(ctype: str, body: bytes, cte: str = "8bit", extra: str = "") -> bytes:
    """One MIME entity: its header lines, a blank line, its (already encoded) body."""
    return (
        f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n{extra}\r\n".encode() + body
    )


def base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _text_part() -> bytes:
    return part("text/plain; charset=utf-8", TEXT.encode())


def huge_subject() -> bytes:
    subject = b"Subject: " + b"Re: semaine 48 " * (30 * MB // 15) + b"\r\n"
    return head("subject") + subject + b"MIME-Version: 1.0\r\n" + _text_part()


def deep_nesting(levels: int = 5000) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(levels)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(levels)))
    top = head("nesting") + b"Subject: profond\r\nMIME-Version: 1.0\r\n"
    return top + opening + _text_part() + closing


def many_headers(count: int = 100_000) -> bytes:
    filler = b"".join(b"X-Filler-%d: valeur %d\r\n" % (i, i) for i in range(count))
    subject = b"Subject: beaucoup d'en-tetes\r\nMIME-Version: 1.0\r\n"
    return filler + head("headers") + subject + _text_part()


def big_base64_text() -> bytes:
    text = (TEXT + "Et encore une ligne de texte accentué, très longue.\n" * 350_000).encode()
    body = part("text/plain; charset=utf-8", base64_lines(text[: 17 * MB]), "base64")
    return head("base64") + b"Subject: long texte\r\nMIME-Version: 1.0\r\n" + body


def _attachment(name: str, ctype: str, data: bytes) -> bytes:
    disposition = f'Content-Disposition: attachment; filename="{name}"\r\n'
    return part(f'{ctype}; name="{name}"', base64_lines(data), "base64", disposition)


def with_attachments(total: float = 24.6) -> bytes:
    size = int(total * MB)
    parts = [_text_part()]
    chunk = os.urandom(3 * MB)
    while sum(map(len, parts)) < size - 5 * MB:
        parts.append(_attachment(f"doc{len(parts)}.pdf", "application/pdf", chunk))
    missing = size - sum(map(len, parts)) - 2000
    parts.append(_attachment("photo.png", "image/png", os.urandom(missing * 3 // 4 * 76 // 78)))
    body = b"".join(b"--mixed\r\n%s\r\n" % p for p in parts) + b"--mixed--\r\n"
    top = b"Subject: avec pieces jointes\r\nMIME-Version: 1.0\r\n"
    return (
        head("attachments")
        + top
        + b'Content-Type: multipart/mixed; boundary="mixed"\r\n\r\n'
        + body
    )


MESSAGES: dict[str, Callable[[], bytes]] = {
    "subject-30MB": huge_subject,
    "nesting-5000": deep_nesting,
    "headers-100k": many_headers,
    "base64-text-24MB": big_base64_text,
    "attachments-24.6MB": with_attachments,
}
