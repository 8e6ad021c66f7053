"""Robust MIME decoding: headers and text bodies, whatever charset a client declared or forgot.

Every decode follows the same chain: the declared charset (read as the web does, so
``iso-8859-1`` means windows-1252), then UTF-8, then windows-1252, then latin-1, which
cannot fail. Nothing here raises on malformed input; what had to be recovered is
reported in ``warnings``. What is read is bounded: header values (``bounded.MAX_FIELD``),
``MAX_TEXT`` characters of text in all, ``MAX_HTML`` characters of one HTML part; control
characters other than tab and newline never reach the text.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.utils
import functools
import quopri
import re
from dataclasses import dataclass, field

from .armour import strip_armour
from .bounded import CALENDARS, MAX_DEPTH, MAX_FIELD, is_attachment, is_tnef, read_message
from .htmltext import html_to_text

Message = email.message.Message
MAX_TEXT = 100_000  # characters read of one message: a weekly answer is a few thousand
MAX_HTML = 1_000_000  # characters of one HTML part converted (about half a second)

# Labels that browsers and mail clients treat as windows-1252, a superset that also
# decodes the bytes 0x80-0x9F (€, ’, œ) that Windows clients put in "latin-1" mail.
_WINDOWS_1252_ALIASES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "us-ascii", "ascii"}
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_SURROGATE = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]+")
_TEXT_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]+")  # all but tab and newline
_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]+")
_FOLD = re.compile(r"\r?\n[ \t]+")
# A signature is proof, not content; a calendar part is read for itself (``calendar``).
_SIGNATURES = frozenset({
    "application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature",
})  # fmt: skip
_OPAQUE = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_TEXTS = frozenset({"text/plain", "text/html"})
_CID_REF = re.compile(r"cid:([^\s\"'<>()]+)", re.I)


@dataclass
class BodyText:
    """The readable text of a message and how it was obtained."""

    text: str = ""
    from_html: bool = False
    attachments: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    read: int = 0  # characters of text read so far, up to MAX_TEXT
    calendars: list[str] = field(default_factory=list)  # text/calendar parts (iMIP)
    # Index in ``attachments`` of parts with a Content-ID: inline images when the HTML
    # body refers to them, then not attachments.
    cids: dict[int, str] = field(default_factory=dict)
    fallback: list[str] = field(default_factory=list)  # text only a TNEF container holds


def decode_bytes(data: bytes, charset: str | None = None) -> tuple[str, str | None]:
    """Decode with the fallback chain; returns the text and a warning when it had to fall back."""
    declared = (charset or "").strip().strip('"').lower()
    tried: list[str] = []
    if declared:
        if declared in _WINDOWS_1252_ALIASES:
            # Plain ASCII declared but 8-bit bytes present: UTF-8 is by far the likelier truth.
            candidates = ["utf-8", "windows-1252"] if declared in {"us-ascii", "ascii"} else []
            candidates.append("windows-1252")
        else:
            candidates = [declared]
    else:
        candidates = []
    for name in [*candidates, "utf-8", "windows-1252"]:
        if name in tried:
            continue
        tried.append(name)
        try:
            text = data.decode(name)
        except UnicodeDecodeError as e:
            # Cut in the middle of its last character (a part read only in part), after
            # characters that prove the charset: the rest is this charset all the same.
            # ("caf\xe9" proves nothing: latin-1 mislabelled, it falls back as before.)
            cut = e.reason == "unexpected end of data" and e.end == len(data)
            if not cut or data[: e.start].isascii():
                continue
            text = data[: e.start].decode(name)
        except LookupError:
            continue
        if name in candidates or not declared:
            return text, None
        return text, f"declared charset {declared!r} failed; decoded as {name}"
    return data.decode(
        "latin-1"
    ), f"declared charset {declared or 'none'!r} failed; decoded as latin-1"


def _decode_encoded_word(charset: str, encoding: str, payload: str) -> str:
    data = payload.encode("ascii", "replace")
    try:
        if encoding.lower() == "b":
            raw = base64.b64decode(data + b"=" * (-len(data) % 4))
        else:
            raw = quopri.decodestring(data.replace(b"_", b" "), header=True)
    except (binascii.Error, ValueError):
        return payload
    return decode_bytes(raw, charset.split("*", 1)[0])[0]


def unfold(value: object) -> str:
    """A raw header value on one line, 8-bit bytes decoded, encoded words left as they are."""
    if value is None:
        return ""
    text = str(value)[:MAX_FIELD]
    if not text.isascii() and _SURROGATE.search(text):
        # compat32 keeps undecodable 8-bit header bytes as surrogates: recover the bytes.
        text = decode_bytes(text.encode("utf-8", "surrogateescape"))[0]
    return _CONTROL.sub(" ", _FOLD.sub(" ", text)).strip()


def decode_header(value: object) -> str:
    """A header value as text: 8-bit bytes and RFC 2047 encoded words decoded, folds unfolded.

    Control characters are replaced by spaces, those written raw and those an encoded
    word smuggled in: a decoded value never breaks a header it is copied into.
    """
    text = unfold(value)
    if "=?" in text:
        text = _BETWEEN_WORDS.sub(r"\1\2", text)
        text = _ENCODED_WORD.sub(lambda m: _decode_encoded_word(*m.groups()), text)
        text = _CONTROL.sub(" ", text)
    return text.strip()


def addresses(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of a raw (undecoded) address header, skipping empty ones.

    Addresses are read before encoded words are decoded, so that a display name such as
    ``=?utf-8?q?Soizic_=3Csoizic=40programme.test=3E?=`` stays a name and never becomes
    the address; only the names are decoded.
    """
    return list(_addresses(value)) if value else []


@functools.lru_cache(maxsize=1024)  # a message reads its From and To more than once
def _addresses(value: str) -> tuple[tuple[str, str], ...]:
    unfolded = unfold(value)
    pairs = _simple_addresses(unfolded)
    if pairs is None:
        pairs = email.utils.getaddresses([unfolded])
    result = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>")
        if "@" in addr:
            result.append((decode_header(name).strip(), addr))
    return tuple(result)


# "Name <a@b>" and "a@b", the forms nearly every header has, read without the stdlib's
# character-by-character parser; anything with quotes, comments, groups or routes is
# left to it.
_SIMPLE_ADDRESS = re.compile(
    r"\s*(?:(?P<name>[^<>@,;:\"()\[\]\\]*?)\s*<(?P<angle>[^<>@\s,;:\"()\[\]\\]+@[^<>@\s,;:\"()\[\]\\]+)>"
    r"|(?P<bare>[^<>@\s,;:\"()\[\]\\]+@[^<>@\s,;:\"()\[\]\\]+))\s*"
)


def _simple_addresses(value: str) -> list[tuple[str, str]] | None:
    pairs = []
    for item in value.split(","):
        if not item.strip():
            continue
        m = _SIMPLE_ADDRESS.fullmatch(item)
        if m is None:
            return None
        if m.group("bare"):
            pairs.append(("", m.group("bare")))
        else:
            pairs.append((" ".join(m.group("name").split()), m.group("angle")))
    return pairs


def _payload_bytes(part: Message, warnings: list[str]) -> bytes:
    """The decoded payload of a leaf part, recovering what it can from broken base64."""
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    # The stored payload, not get_payload(): that one decodes 8-bit text lossily ("replace").
    payload = part._payload  # type: ignore[attr-defined]
    if isinstance(payload, list) or payload is None:
        return b""
    raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
    if cte == "base64":
        return decode_base64(raw, warnings)
    if cte == "quoted-printable":
        return quopri.decodestring(raw)
    return raw


def decode_base64(raw: bytes, warnings: list[str]) -> bytes:
    """Base64 as the sender encoded it, every byte; broken input decoded as far as it goes."""
    data = raw.translate(None, b" \t\r\n")  # line wrapping, not data
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        pass
    cleaned = _BASE64_JUNK.sub(b"", data)
    if len(cleaned) != len(data):
        warnings.append(
            f"base64 part: {len(data) - len(cleaned)} characters outside the alphabet ignored"
        )
    decoded, lost = [], False
    # Padding ends a piece: several encoded pieces may have been run together.
    for piece in cleaned.split(b"="):
        if len(piece) % 4 == 1:  # a lone character cannot encode a byte
            piece, lost = piece[:-1], True
        if piece:
            decoded.append(binascii.a2b_base64(piece + b"=" * (-len(piece) % 4)))
    if lost:
        warnings.append("truncated base64 part: decoded what was complete")
    elif len(cleaned) == len(data):
        warnings.append("base64 part without its padding: decoded in full")
    return b"".join(decoded)


def _unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: rejoin soft-broken lines of the same quote depth."""
    out: list[str] = []
    pending = ""
    pending_depth = -1
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        if pending and depth == pending_depth:
            content = pending + content
        elif pending:
            out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
        pending = ""
        if content.endswith(" ") and content.strip() != "--":
            pending, pending_depth = (content[:-1] if delsp else content), depth
            continue
        out.append(">" * depth + (" " if depth else "") + content)
    if pending:
        out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
    return "\n".join(out)


def _leaf_text(part: Message, body: BodyText) -> tuple[str, bool] | None:
    """(text, came from HTML) for a text/plain or text/html leaf, None for anything else."""
    ctype = part.get_content_type()
    left = MAX_TEXT - body.read
    if ctype not in _TEXTS or left <= 0:
        return None
    data = _payload_bytes(part, body.warnings)
    text, warning = decode_bytes(data, part.get_content_charset())
    if warning:
        body.warnings.append(f"{ctype} part: {warning}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if ctype == "text/html":
        if len(text) > MAX_HTML:
            body.warnings.append(
                f"HTML part longer than {MAX_HTML:,} characters: the rest not read"
            )
        text, from_html = html_to_text(text[:MAX_HTML], limit=left), True
    else:
        params = {k.lower(): v.lower() for k, v in part.get_params() or [] if isinstance(v, str)}
        if params.get("format") == "flowed":
            text = _unflow(text[: 2 * left], params.get("delsp") == "yes")
        text = strip_armour(text)
        from_html = False
    if len(text) > left:
        body.warnings.append(f"text longer than {MAX_TEXT:,} characters: the rest not read")
        text = text[:left]
    body.read += len(text)
    return text, from_html


def _collect(part: Message, body: BodyText, depth: int = 0) -> tuple[str, bool] | None:
    if depth > MAX_DEPTH:
        body.warnings.append(f"MIME nesting deeper than {MAX_DEPTH} levels: ignored below")
        return None
    if not part.is_multipart():
        if part.get_content_maintype() == "multipart":
            body.warnings.append("multipart without its boundary: read as plain text")
            return _unbounded_multipart(part, body)
        return _leaf(part, body)
    if part.get_content_maintype() == "message" and _disposition(part) == "attachment":
        name = filename(part) or _attached_subject(part)
        if name:
            body.attachments.append(name)
        return None
    children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
    subtype = part.get_content_subtype()
    if subtype == "alternative":
        # The plain alternative keeps the ">" quoting: prefer it, and convert HTML only
        # when there is no usable plain text (converting is the costly part of parsing).
        typed = sorted(
            ((c.get_content_type(), c) for c in children), key=lambda t: t[0] != "text/plain"
        )
        for ctype, child in typed:
            if ctype in CALENDARS:  # an invitation's answer: read it too
                _leaf(child, body)
        for ctype, child in typed:
            if ctype in CALENDARS:
                continue
            result = _collect(child, body, depth + 1)
            if result and result[0].strip():
                return result
        return None
    if subtype == "report":
        # A delivery report: its first part is the human-readable explanation.
        return _collect(children[0], body, depth + 1) if children else None
    texts = [r for r in (_collect(c, body, depth + 1) for c in children) if r and r[0].strip()]
    if not texts:
        return None
    return "\n\n".join(t for t, _ in texts), any(h for _, h in texts)


def _leaf(part: Message, body: BodyText) -> tuple[str, bool] | None:
    """A part that is not a multipart: its text, or what it is noted as."""
    ctype = part.get_content_type()
    if ctype in _TEXTS and _disposition(part) != "attachment":
        return _leaf_text(part, body)  # the common case, without reading file names
    if ctype in _SIGNATURES:
        return None
    if ctype in _OPAQUE:
        body.warnings.append(f"{ctype} part (S/MIME signed or encrypted): not read")
        return None
    name = filename(part)
    if ctype in CALENDARS:
        text, _ = decode_bytes(_payload_bytes(part, body.warnings), part.get_content_charset())
        body.calendars.append(text[:MAX_TEXT])
        if name:  # an .ics file sent with the mail; an alternative of the text has no name
            body.attachments.append(name)
        return None
    if is_tnef(part):
        from .tnef import read_tnef  # rare: its library is loaded only for Outlook's containers

        read_tnef(_payload_bytes(part, body.warnings), body)
        return None
    if is_attachment(part) or part.get_content_maintype() != "text":
        if name:
            cid = str(part.get("Content-ID", "")).strip().strip("<>")
            if cid and _disposition(part) != "attachment":
                body.cids[len(body.attachments)] = cid
            body.attachments.append(name)
        return None
    return _leaf_text(part, body)


def _disposition(part: Message) -> str:
    return str(part.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()


def filename(part: Message) -> str:
    """A part's file name as its sender wrote it: RFC 2231 and RFC 2047 names decoded."""
    try:
        name = part.get_filename()  # RFC 2231 (name*=utf-8''…, continuations) handled here
    except (LookupError, ValueError, TypeError):
        name = None
    if not name:
        return ""
    if not name.isascii():
        # compat32 keeps undecodable bytes of an RFC 2231 name as they came: recover them.
        name = decode_bytes(name.encode("utf-8", "surrogateescape"))[0]
    return decode_header(name)


def _attached_subject(part: Message) -> str:
    """The name a mail client gives an attached message without a file name."""
    inner = part.get_payload()
    if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
        subject = decode_header(inner[0].get("Subject", ""))
        return f"{subject or 'message'}.eml"
    return ""


def _drop_inline_images(msg: Message, body: BodyText) -> None:
    """Parts with a Content-ID the HTML body refers to are inline images, not attachments."""
    html = []
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            text = decode_bytes(_payload_bytes(part, []), part.get_content_charset())[0]
            html.append(text[:MAX_HTML])
    referenced = {m.group(1) for m in _CID_REF.finditer("\n".join(html))}
    body.attachments = [
        name
        for i, name in enumerate(body.attachments)
        if i not in body.cids or body.cids[i] not in referenced
    ]
    body.cids = {}


def _unbounded_multipart(part: Message, body: BodyText) -> tuple[str, bool]:
    """A multipart whose boundary never appears: keep the lines that are not MIME scaffolding."""
    payload = part.get_payload()
    text = payload if isinstance(payload, str) else ""
    text = decode_bytes(text[: 4 * MAX_TEXT].encode("utf-8", "surrogateescape"))[0]
    lines = [
        line
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if not re.match(r"(--\S+$|content-[\w-]+:|mime-version:)", line.strip(), re.I)
    ]
    return "\n".join(lines)[:MAX_TEXT], False


def body_text(msg: Message) -> BodyText:
    """The message's readable text: the text/plain alternative when there is one, else the HTML."""
    body = BodyText()
    try:
        result = _collect(msg, body)
    except Exception as e:  # a malformed structure must not lose the rest of the message
        body.warnings.append(f"body could not be fully decoded: {type(e).__name__}: {e}")
        result = None
    if not (result and result[0].strip()) and body.fallback:
        result = "\n\n".join(body.fallback), False
    if result:
        body.text, body.from_html = result
        body.text = _TEXT_CONTROL.sub("", body.text)
    if body.cids:
        _drop_inline_images(msg, body)
    for defect in getattr(msg, "defects", []):
        body.warnings.append(f"MIME defect: {type(defect).__name__}")
    return body


def message_from_bytes(raw: bytes) -> Message:
    """Parse bytes into a message with the fast, lenient compat32 policy, within bounds."""
    return read_message(raw)[0]
