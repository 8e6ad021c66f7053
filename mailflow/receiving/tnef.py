"""Outlook's TNEF containers (``winmail.dat``, application/ms-tnef), read with ``tnefparse``.

A container stands for the files it holds: their names become the message's
attachments. Its body (plain text, or HTML) is the message's text when the message
has no other; a body only in compressed RTF is not read (said in the warnings).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tnefparse import TNEF

from .htmltext import html_to_text

if TYPE_CHECKING:
    from .mime import BodyText

# tnefparse logs every attribute it does not know at warning level: not ours to report.
logging.getLogger("tnefparse").setLevel(logging.ERROR)


def read_tnef(data: bytes, body: BodyText) -> None:
    """Add the container's files to ``body.attachments`` and its text to ``body.fallback``."""
    from .mime import MAX_TEXT, decode_bytes

    try:
        container = TNEF(data, do_checksum=False)
    except Exception as e:  # a truncated or foreign container: the rest of the mail stands
        body.warnings.append(f"TNEF container unreadable: {type(e).__name__}: {e}")
        body.attachments.append("winmail.dat")
        return
    for attachment in container.attachments:
        name = _name(attachment)
        if name:
            body.attachments.append(name)
    if container.body:
        raw = container.body
        text = raw if isinstance(raw, str) else decode_bytes(raw, "windows-1252")[0]
        body.fallback.append(text.replace("\r\n", "\n").rstrip("\x00")[:MAX_TEXT])
    elif container.htmlbody:
        raw = container.htmlbody
        html = raw if isinstance(raw, str) else decode_bytes(raw, "utf-8")[0]
        body.fallback.append(html_to_text(html, limit=MAX_TEXT))
    elif container.has_body():
        body.warnings.append("TNEF body in compressed RTF only: not read")


def _name(attachment: object) -> str:
    """The long file name of a TNEF attachment, else its short one, as text."""
    from .mime import decode_bytes

    for getter in ("long_filename", "name"):
        try:
            value = getattr(attachment, getter)
            value = value() if callable(value) else value
        except (UnicodeDecodeError, AttributeError, IndexError):
            value = getattr(attachment, "_name", b"")
        if isinstance(value, bytes):
            value = decode_bytes(value.rstrip(b"\x00"), "windows-1252")[0]
        if isinstance(value, str) and value.strip("\x00 "):
            return value.strip("\x00 ")
    return ""
